// The prompt's line editor: keystrokes in, terminal output out. No DOM, no xterm.
//
// Feed it what xterm's `onData` gives (typed text, pasted text, escape sequences of
// special keys); it answers with the bytes to write to the terminal so the screen shows
// the edited line, and with the line once Enter submits it.
//
// The screen is drawn with relative cursor moves only. To know where each character
// lands, the editor lays the prompt and the line out the way the terminal does: it knows
// the terminal's width and each character's width (East Asian wide characters take two
// cells, combining marks none), so a line that wraps onto several rows still edits
// correctly. The prompt must start at column 0; the page makes sure it does.

const ESC = "\x1b";
const CLEAR_TO_END = `${ESC}[J`;
const CLEAR_LINE_RIGHT = `${ESC}[K`;

// Control keys, as xterm sends them.
const CTRL_A = "\x01";
const CTRL_B = "\x02";
const CTRL_C = "\x03";
const CTRL_D = "\x04";
const CTRL_E = "\x05";
const CTRL_F = "\x06";
const BACKSPACE_CTRL_H = "\x08";
const CTRL_K = "\x0b";
const CTRL_L = "\x0c";
const CTRL_N = "\x0e";
const CTRL_P = "\x10";
const CTRL_U = "\x15";
const CTRL_W = "\x17";
const BACKSPACE = "\x7f";

// ---- character widths -------------------------------------------------------------

// Wide ranges as xterm.js's default (Unicode 6) tables have them, so the editor's idea of
// where a character lands matches the terminal's.
const WIDE_RANGES = [
  [0x1100, 0x115f], [0x2329, 0x232a], [0x2e80, 0x303e], [0x3040, 0xa4cf],
  [0xac00, 0xd7a3], [0xf900, 0xfaff], [0xfe10, 0xfe19], [0xfe30, 0xfe6f],
  [0xff00, 0xff60], [0xffe0, 0xffe6], [0x1f300, 0x1f64f], [0x1f900, 0x1f9ff],
  [0x20000, 0x2fffd], [0x30000, 0x3fffd],
];
const ZERO_WIDTH = /^[\p{Mn}\p{Me}\p{Cf}\u1160-\u11ff]$/u;

/** Cells one code point takes on the terminal: 0, 1 or 2. */
export function codePointWidth(char) {
  const code = char.codePointAt(0);
  if (code < 0x20 || (code >= 0x7f && code < 0xa0)) return 0;
  if (ZERO_WIDTH.test(char)) return 0;
  for (const [low, high] of WIDE_RANGES) {
    if (code >= low && code <= high) return 2;
  }
  return 1;
}

function startsZeroWidth(text) {
  return text !== "" && codePointWidth(String.fromCodePoint(text.codePointAt(0))) === 0;
}

/** Cells a string takes (the sum over its code points, as the terminal counts). */
export function textWidth(text) {
  let width = 0;
  for (const char of text) width += codePointWidth(char);
  return width;
}

// Cursor moves step over whole user-perceived characters ("e" + combining accent, an
// emoji sequence), never into the middle of one.
const segmenter = typeof Intl !== "undefined" && Intl.Segmenter
  ? new Intl.Segmenter(undefined, { granularity: "grapheme" })
  : null;

/** The offsets (UTF-16) at which a cursor may stand in `text`, from 0 to its length. */
function boundaries(text) {
  const stops = [];
  if (segmenter) {
    for (const { index } of segmenter.segment(text)) stops.push(index);
  } else {
    let index = 0;
    for (const char of text) {
      stops.push(index);
      index += char.length;
    }
  }
  stops.push(text.length);
  return stops;
}

// ---- the editor ---------------------------------------------------------------------

export class LineEditor {
  /**
   * @param {object} options
   * @param {string} [options.prompt] shown before the line
   * @param {number} [options.columns] the terminal's width; keep it current with setColumns
   * @param {number} [options.historySize] submitted lines kept for Up/Down
   */
  constructor({ prompt = "$ ", columns = 80, historySize = 1000 } = {}) {
    this.prompt = prompt;
    this.columns = Math.max(1, columns);
    this.historySize = historySize;
    this.history = [];
    this.text = "";
    this.cursor = 0; // UTF-16 offset into text, always at a boundary
    this.visible = false;
    this._historyIndex = 0; // == history.length when not browsing
    this._draft = ""; // the line being typed before browsing history began
    this._at = { row: 0, col: 0 }; // where the terminal's cursor is, relative to the prompt
  }

  setColumns(columns) {
    this.columns = Math.max(1, columns);
    // The terminal reflows the wrapped line on resize; its cursor stays on the same
    // character, which is where the editor now computes it to be.
    this._at = this._position(this.cursor);
  }

  /** Draw the prompt and the line being edited; keystrokes are edited from now on. */
  show() {
    if (this.visible) return "";
    this.visible = true;
    this._at = { row: 0, col: 0 };
    return this._redrawFrom(-this.prompt.length, { row: -1, col: 0 });
  }

  /** Erase the prompt and line from the screen (to write output there); keep the line. */
  hide() {
    if (!this.visible) return "";
    this.visible = false;
    const out = this._moveTo({ row: 0, col: 0 }) + CLEAR_TO_END;
    this._at = { row: 0, col: 0 };
    return out;
  }

  /**
   * Edit with one onData chunk.
   *
   * Returns `{ write, line, rest }`: `write` goes to the terminal; `line` is the submitted
   * line (never blank: Enter on a blank line just shows a new prompt) or null; `rest` is
   * what followed Enter in the chunk (typeahead for the command), unread by the editor.
   * Once a line is submitted the editor is hidden until `show()` is called again.
   */
  feed(data) {
    let write = "";
    let i = 0;
    while (i < data.length && this.visible) {
      const char = data[i];
      if (char === ESC) {
        const { length, key } = readEscape(data, i);
        write += this._key(key);
        i += length;
      } else if (char === "\r" || char === "\n") {
        // A paste ends lines with "\r\n" or "\n": one Enter each.
        i += char === "\r" && data[i + 1] === "\n" ? 2 : 1;
        const { write: echoed, line } = this._enter();
        write += echoed;
        if (line !== null) return { write, line, rest: data.slice(i) };
      } else if (char < " " || char === BACKSPACE) {
        write += this._key(CONTROL_KEYS[char] ?? null);
        i += 1;
      } else {
        // Runs of printable text (typing or a paste) go in at once.
        let end = i + 1;
        while (end < data.length && isPrintable(data[end])) end += 1;
        write += this._insert(data.slice(i, end));
        i = end;
      }
    }
    return { write, line: null, rest: data.slice(i) };
  }

  // ---- keys -------------------------------------------------------------------------

  _key(key) {
    switch (key) {
      case "left": return this._moveCursor(this._previousStop(this.cursor));
      case "right": return this._moveCursor(this._nextStop(this.cursor));
      case "home": return this._moveCursor(0);
      case "end": return this._moveCursor(this.text.length);
      case "wordLeft": return this._moveCursor(this._wordStart(this.cursor));
      case "wordRight": return this._moveCursor(this._wordEnd(this.cursor));
      case "backspace": return this._delete(this._previousStop(this.cursor), this.cursor);
      case "delete": return this._delete(this.cursor, this._nextStop(this.cursor));
      case "killBefore": return this._delete(0, this.cursor);
      case "killAfter": return this._delete(this.cursor, this.text.length);
      case "killWord": return this._delete(this._wordStart(this.cursor), this.cursor);
      case "up": return this._browse(-1);
      case "down": return this._browse(+1);
      case "interrupt": return this._interrupt();
      case "clearScreen": return this._clearScreen();
      case "eof":
        // Ctrl-D deletes forward, like readline; on an empty line there is nothing to end.
        return this._delete(this.cursor, this._nextStop(this.cursor));
      default: return ""; // keys a prompt has no use for (Tab, F-keys, Alt-…) are ignored
    }
  }

  _enter() {
    const line = this.text;
    const end = this._position(this.text.length);
    // After a line that exactly fills its last row the cursor already sits on a fresh row.
    const newline = end.col === 0 && end.row > 0 ? "" : "\r\n";
    const write = this._moveTo(end) + newline;
    this.visible = false;
    if (line.trim() === "") {
      this._resetLine();
      return { write: write + this.show(), line: null };
    }
    if (this.history[this.history.length - 1] !== line) {
      this.history.push(line);
      if (this.history.length > this.historySize) this.history.shift();
    }
    this._resetLine();
    return { write, line };
  }

  _interrupt() {
    // Like a shell: the line stays on screen marked ^C, and a fresh prompt follows.
    const write = this._moveTo(this._position(this.text.length)) + "^C\r\n";
    this._resetLine();
    this.visible = false;
    return write + this.show();
  }

  _clearScreen() {
    this.visible = false;
    return `${ESC}[H${ESC}[2J` + this.show();
  }

  _resetLine() {
    this.text = "";
    this.cursor = 0;
    this._draft = "";
    this._historyIndex = this.history.length;
  }

  _browse(step) {
    const target = this._historyIndex + step;
    if (target < 0 || target > this.history.length) return "";
    if (this._historyIndex === this.history.length) this._draft = this.text;
    this._historyIndex = target;
    const text = target === this.history.length ? this._draft : this.history[target];
    return this._replace(0, this.text.length, text, text.length);
  }

  // ---- edits ------------------------------------------------------------------------

  _insert(chunk) {
    return this._replace(this.cursor, this.cursor, chunk, this.cursor + chunk.length);
  }

  _delete(from, to) {
    if (from >= to) return "";
    return this._replace(from, to, "", from);
  }

  _moveCursor(offset) {
    if (offset === this.cursor) return "";
    this.cursor = offset;
    return this._moveTo(this._position(offset));
  }

  /** Replace text[from, to) with `insert`, put the cursor at `cursor`, redraw from `from`. */
  _replace(from, to, insert, cursor) {
    const oldEnd = this._position(this.text.length);
    const oldText = this.text;
    this.text = this.text.slice(0, from) + insert + this.text.slice(to);
    // An inserted combining mark joins the character before it: keep the cursor at a
    // boundary so arrows never split a character.
    const stops = boundaries(this.text);
    this.cursor = stops.find((stop) => stop >= cursor) ?? this.text.length;
    let start = stops.filter((stop) => stop <= from).pop() ?? 0;
    // A combining mark at the very start of the line is drawn into the prompt's last
    // cell; rewriting that cell is the only way to change it.
    if (start === 0 && this.prompt && (startsZeroWidth(oldText) || startsZeroWidth(this.text))) {
      start = -1;
    }
    return this._redrawFrom(start, oldEnd);
  }

  // ---- drawing ----------------------------------------------------------------------

  /**
   * Write the line from `offset` (negative: from inside the prompt) to its end, clear what
   * the old, longer line left behind, and put the cursor where it belongs.
   */
  _redrawFrom(offset, oldEnd) {
    let write = this._moveTo(this._position(offset));
    write += offset < 0 ? this.prompt.slice(offset) + this.text : this.text.slice(offset);
    const { row, col } = this._layout(this.text.length);
    let end = { row, col };
    if (col >= this.columns) {
      // The terminal leaves the cursor on the last column until the next character; make
      // the wrap happen now so cursor moves start from a known cell.
      write += ` \r${CLEAR_LINE_RIGHT}`;
      end = { row: row + 1, col: 0 };
    }
    this._at = end;
    if (before(end, oldEnd)) write += CLEAR_TO_END;
    write += this._moveTo(this._position(this.cursor));
    return write;
  }

  _moveTo(target) {
    const { row, col } = this._at;
    let write = "";
    if (target.row < row) write += csi(row - target.row, "A");
    if (target.row > row) write += csi(target.row - row, "B");
    if (target.col !== col) {
      if (target.col === 0) write += "\r";
      else if (target.col < col) write += csi(col - target.col, "D");
      else write += csi(target.col - col, "C");
    }
    this._at = target;
    return write;
  }

  /** The cell where the cursor stands before the character at `offset`. */
  _position(offset) {
    const place = this._layout(offset);
    // After a full row the next character starts the row below.
    return place.col >= this.columns ? { row: place.row + 1, col: 0 } : place;
  }

  /**
   * Where the terminal's cursor would be after writing prompt + text up to `offset`
   * (negative: only part of the prompt). `col` may equal the width: a full row.
   */
  _layout(offset) {
    const shown = offset < 0
      ? this.prompt.slice(0, this.prompt.length + offset)
      : this.prompt + this.text.slice(0, offset);
    let row = 0;
    let col = 0;
    for (const char of shown) {
      const width = codePointWidth(char);
      // A wide character that does not fit on the row goes to the next one whole.
      if (col + width > this.columns && col > 0) {
        row += 1;
        col = 0;
      }
      col += width;
    }
    return { row, col };
  }

  _previousStop(offset) {
    return boundaries(this.text).filter((stop) => stop < offset).pop() ?? 0;
  }

  _nextStop(offset) {
    return boundaries(this.text).find((stop) => stop > offset) ?? this.text.length;
  }

  // Words are runs of non-blanks, as for the shell's Ctrl-W. The result is moved to a
  // character boundary: a blank can carry a combining mark.
  _wordStart(offset) {
    let i = offset;
    while (i > 0 && /\s/.test(this.text[i - 1])) i -= 1;
    while (i > 0 && !/\s/.test(this.text[i - 1])) i -= 1;
    return boundaries(this.text).filter((stop) => stop <= i).pop() ?? 0;
  }

  _wordEnd(offset) {
    let i = offset;
    while (i < this.text.length && /\s/.test(this.text[i])) i += 1;
    while (i < this.text.length && !/\s/.test(this.text[i])) i += 1;
    return boundaries(this.text).find((stop) => stop >= i) ?? this.text.length;
  }
}

// ---- input decoding -----------------------------------------------------------------

const CONTROL_KEYS = {
  [CTRL_A]: "home",
  [CTRL_B]: "left",
  [CTRL_C]: "interrupt",
  [CTRL_D]: "eof",
  [CTRL_E]: "end",
  [CTRL_F]: "right",
  [BACKSPACE_CTRL_H]: "backspace",
  [CTRL_K]: "killAfter",
  [CTRL_L]: "clearScreen",
  [CTRL_N]: "down",
  [CTRL_P]: "up",
  [CTRL_U]: "killBefore",
  [CTRL_W]: "killWord",
  [BACKSPACE]: "backspace",
};

// Final bytes of CSI/SS3 sequences (ESC [ A, ESC O A, ...) and the keys they are.
const CURSOR_KEYS = { A: "up", B: "down", C: "right", D: "left", H: "home", F: "end" };
// ESC [ n ~ sequences.
const TILDE_KEYS = { 1: "home", 7: "home", 4: "end", 8: "end", 3: "delete" };

function isPrintable(char) {
  return char >= " " && char !== BACKSPACE && char !== ESC;
}

/**
 * Decode the escape sequence at `data[start]` (which is ESC): `{ length, key }`, where
 * `key` is null for sequences the editor ignores. An incomplete sequence at the end of
 * the chunk is dropped: xterm never splits a key's sequence across onData calls.
 */
export function readEscape(data, start) {
  const kind = data[start + 1];
  if (kind === "[") {
    let end = start + 2;
    // Parameter and intermediate bytes, then one final byte in @..~.
    while (end < data.length && !(data[end] >= "@" && data[end] <= "~")) end += 1;
    if (end >= data.length) return { length: data.length - start, key: null };
    const params = data.slice(start + 2, end).split(";");
    const final = data[end];
    const length = end - start + 1;
    if (final === "~") return { length, key: TILDE_KEYS[params[0]] ?? null };
    const key = CURSOR_KEYS[final] ?? null;
    // Ctrl or Alt with Left/Right (ESC [ 1 ; 5 D) moves by words.
    const modified = params.length > 1 && params[1] !== "1";
    if (modified && key === "left") return { length, key: "wordLeft" };
    if (modified && key === "right") return { length, key: "wordRight" };
    return { length, key };
  }
  if (kind === "O") {
    if (start + 2 >= data.length) return { length: data.length - start, key: null };
    return { length: 3, key: CURSOR_KEYS[data[start + 2]] ?? null };
  }
  if (kind === "b") return { length: 2, key: "wordLeft" }; // Alt-b
  if (kind === "f") return { length: 2, key: "wordRight" }; // Alt-f
  if (kind === BACKSPACE) return { length: 2, key: "killWord" }; // Alt-Backspace
  // A lone Escape, or Alt with some other key.
  return { length: kind === undefined ? 1 : 2, key: null };
}

function csi(count, final) {
  return count === 1 ? `${ESC}[${final}` : `${ESC}[${count}${final}`;
}

function before(a, b) {
  return a.row < b.row || (a.row === b.row && a.col < b.col);
}
