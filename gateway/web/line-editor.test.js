// The line editor, checked by what its output draws on a small model of a terminal.
// Run: node --test gateway/web/

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { LineEditor, codePointWidth, readEscape, textWidth } from "./line-editor.js";

const LEFT = "\x1b[D";
const RIGHT = "\x1b[C";
const UP = "\x1b[A";
const DOWN = "\x1b[B";
const HOME = "\x1b[H";
const END = "\x1b[F";
const DELETE = "\x1b[3~";
const BACKSPACE = "\x7f";

/**
 * Just enough of a terminal to check an editor's output: printing with auto-wrap (and the
 * "pending wrap" at the last column), wide and zero-width characters, CR, LF, cursor moves
 * (CSI A B C D H) and erasing (CSI J, CSI 2J, CSI K). Anything else fails the test.
 */
class Screen {
  constructor(columns) {
    this.columns = columns;
    this.rows = [];
    this.x = 0;
    this.y = 0;
    this.pendingWrap = false;
  }

  row(y) {
    while (this.rows.length <= y) this.rows.push(Array(this.columns).fill(" "));
    return this.rows[y];
  }

  write(data) {
    let i = 0;
    while (i < data.length) {
      const char = data[i];
      if (char === "\x1b") {
        const match = /^\x1b\[(\d*)([A-Za-z])/.exec(data.slice(i));
        assert.ok(match, `unexpected escape sequence ${JSON.stringify(data.slice(i, i + 8))}`);
        this.csi(match[1] === "" ? null : Number(match[1]), match[2]);
        i += match[0].length;
        continue;
      }
      const code = data.codePointAt(i);
      const text = String.fromCodePoint(code);
      i += text.length;
      if (char === "\r") {
        this.x = 0;
        this.pendingWrap = false;
      } else if (char === "\n") {
        this.y += 1;
        this.pendingWrap = false;
      } else {
        assert.ok(code >= 0x20, `unexpected control character ${JSON.stringify(char)}`);
        this.print(text);
      }
    }
  }

  print(text) {
    const width = codePointWidth(text);
    if (width === 0) {
      const row = this.row(this.y);
      const x = this.pendingWrap ? this.x : Math.max(0, this.x - 1);
      row[x] += text;
      return;
    }
    if (this.pendingWrap || this.x + width > this.columns) {
      // Like xterm.js, a wide character that does not fit blanks the rest of the row.
      if (!this.pendingWrap) this.row(this.y).fill(" ", this.x);
      this.x = 0;
      this.y += 1;
      this.pendingWrap = false;
    }
    const row = this.row(this.y);
    row[this.x] = text;
    if (width === 2) row[this.x + 1] = "";
    this.x += width;
    if (this.x >= this.columns) {
      this.x = this.columns - 1;
      this.pendingWrap = true;
    }
  }

  csi(count, final) {
    const n = count ?? 1;
    this.pendingWrap = false;
    switch (final) {
      case "A": this.y = Math.max(0, this.y - n); break;
      case "B": this.y += n; break;
      case "C": this.x = Math.min(this.columns - 1, this.x + n); break;
      case "D": this.x = Math.max(0, this.x - n); break;
      case "H": this.x = 0; this.y = 0; break;
      case "K": this.row(this.y).fill(" ", this.x); break;
      case "J":
        if (count === 2) {
          this.rows = [];
        } else {
          this.row(this.y).fill(" ", this.x);
          this.rows.length = Math.min(this.rows.length, this.y + 1);
        }
        break;
      default: assert.fail(`unexpected CSI ${final}`);
    }
  }

  /** The screen's text: rows without trailing blanks, trailing empty rows dropped. */
  text() {
    const lines = this.rows.map((row) => row.join("").trimEnd());
    while (lines.length && lines[lines.length - 1] === "") lines.pop();
    return lines.join("\n");
  }

  /** The screen's text from row `top` on (where a prompt began). */
  textFrom(top) {
    const lines = this.text().split("\n").slice(top);
    return lines.join("\n");
  }

  /** Where the next character would be printed. */
  cursor() {
    return this.pendingWrap ? { row: this.y + 1, col: 0 } : { row: this.y, col: this.x };
  }
}

/** An editor showing its prompt on a fresh screen. */
function setup({ columns = 80, prompt = "$ " } = {}) {
  const editor = new LineEditor({ prompt, columns });
  const screen = new Screen(columns);
  screen.write(editor.show());
  const type = (...keys) => {
    const results = keys.map((key) => editor.feed(key));
    for (const { write } of results) screen.write(write);
    return results[results.length - 1];
  };
  return { editor, screen, type };
}

/** What a correct editor shows: prompt and line drawn fresh, cursor before `cursor`. */
function expected(editor) {
  const screen = new Screen(editor.columns);
  screen.write(editor.prompt + editor.text.slice(0, editor.cursor));
  const cursor = screen.cursor();
  screen.write(editor.text.slice(editor.cursor));
  return { text: screen.text(), cursor };
}

/** The screen shows prompt + line from row `top` on, cursor in place. */
function assertShowsLine(screen, editor, top = 0) {
  const want = expected(editor);
  assert.equal(screen.textFrom(top), want.text);
  const { row, col } = screen.cursor();
  assert.deepEqual({ row: row - top, col }, want.cursor);
}

describe("typing", () => {
  test("echoes typed characters as they are", () => {
    const { editor, screen, type } = setup();
    assert.equal(type("e").write, "e");
    assert.equal(type("cho hi").write, "cho hi");
    assert.equal(editor.text, "echo hi");
    assert.equal(screen.text(), "$ echo hi");
    assert.deepEqual(screen.cursor(), { row: 0, col: 9 });
  });

  test("show() draws the prompt", () => {
    const editor = new LineEditor({ prompt: "> " });
    assert.equal(editor.show(), "> ");
    assert.equal(editor.show(), "", "already visible");
    assert.equal(editor.visible, true);
  });

  test("inserts at the cursor", () => {
    const { editor, screen, type } = setup();
    type("ac", LEFT, "b");
    assert.equal(editor.text, "abc");
    assert.equal(screen.text(), "$ abc");
    assert.deepEqual(screen.cursor(), { row: 0, col: 4 });
    type(HOME, ">");
    assert.equal(screen.text(), "$ >abc");
    assertShowsLine(screen, editor);
  });

  test("backspace and delete remove the character before and under the cursor", () => {
    const { editor, screen, type } = setup();
    type("abcd", LEFT, LEFT, BACKSPACE);
    assert.equal(editor.text, "acd");
    assert.equal(screen.text(), "$ acd");
    type(DELETE);
    assert.equal(editor.text, "ad");
    assert.equal(screen.text(), "$ ad");
    assertShowsLine(screen, editor);
    type("\b", "\b", "\b"); // Ctrl-H is backspace too; extra ones do nothing
    assert.equal(editor.text, "d");
    assert.equal(screen.text(), "$ d");
    type(END, DELETE);
    assert.equal(editor.text, "d");
  });

  test("arrows stop at the ends of the line", () => {
    const { editor, screen, type } = setup();
    type("ab", RIGHT);
    assert.equal(editor.cursor, 2);
    type(LEFT, LEFT, LEFT);
    assert.equal(editor.cursor, 0);
    assert.deepEqual(screen.cursor(), { row: 0, col: 2 });
  });

  test("Home and End, in every encoding xterm uses, and Ctrl-A / Ctrl-E", () => {
    for (const [home, end] of [
      [HOME, END], ["\x1bOH", "\x1bOF"], ["\x1b[1~", "\x1b[4~"], ["\x1b[7~", "\x1b[8~"],
      ["\x01", "\x05"],
    ]) {
      const { editor, screen, type } = setup();
      type("hello", home);
      assert.equal(editor.cursor, 0, JSON.stringify(home));
      assert.deepEqual(screen.cursor(), { row: 0, col: 2 });
      type(end);
      assert.equal(editor.cursor, 5, JSON.stringify(end));
      assert.deepEqual(screen.cursor(), { row: 0, col: 7 });
    }
  });

  test("application-mode arrows (ESC O A..D) work like the normal ones", () => {
    const { editor, type } = setup();
    type("ab", "\x1bOD", "X", "\x1bOC", "Y");
    assert.equal(editor.text, "aXbY");
  });

  test("Ctrl-U, Ctrl-K and Ctrl-W cut before the cursor, after it, and a word", () => {
    const { editor, screen, type } = setup();
    type("git commit -m wip", "\x17");
    assert.equal(editor.text, "git commit -m ");
    type("\x17", "\x17");
    assert.equal(editor.text, "git ");
    assertShowsLine(screen, editor);
    type("log --oneline", HOME, RIGHT, RIGHT, RIGHT, RIGHT, "\x0b");
    assert.equal(editor.text, "git ");
    type("status", LEFT, LEFT, "\x15");
    assert.equal(editor.text, "us");
    assert.equal(screen.text(), "$ us");
    assertShowsLine(screen, editor);
  });

  test("Ctrl-Left / Ctrl-Right and Alt-b / Alt-f move by words", () => {
    const { editor, type } = setup();
    type("one two three", "\x1b[1;5D");
    assert.equal(editor.cursor, 8);
    type("\x1bb");
    assert.equal(editor.cursor, 4);
    type("\x1b[1;5C");
    assert.equal(editor.cursor, 7);
    type("\x1bf");
    assert.equal(editor.cursor, 13);
  });

  test("keys a prompt has no use for are ignored whole", () => {
    const { editor, screen, type } = setup();
    type("a", "\t", "\x1bOP", "\x1b[15~", "\x1b[2~", "\x1b", "\x1bx", "\x1b[1;2P", "\x00", "b");
    assert.equal(editor.text, "ab");
    assert.equal(screen.text(), "$ ab");
  });

  test("a paste goes in at the cursor in one piece", () => {
    const { editor, screen, type } = setup();
    type("echo ", "hello world");
    assert.equal(editor.text, "echo hello world");
    assert.equal(screen.text(), "$ echo hello world");
  });
});

describe("Enter", () => {
  test("submits the line and hides the editor", () => {
    const { editor, screen, type } = setup();
    type("echo hi", HOME);
    const result = type("\r");
    assert.equal(result.line, "echo hi");
    assert.equal(result.rest, "");
    assert.equal(editor.visible, false);
    assert.equal(editor.text, "");
    // The command line stays on screen and the cursor is on the next row.
    assert.equal(screen.text(), "$ echo hi");
    assert.deepEqual(screen.cursor(), { row: 1, col: 0 });
  });

  test("what follows Enter in the same chunk is left for the command", () => {
    const { editor, type } = setup();
    const result = type("read x\rabc\r");
    assert.equal(result.line, "read x");
    assert.equal(result.rest, "abc\r");
    assert.deepEqual(editor.feed("more"), { write: "", line: null, rest: "more" },
      "a hidden editor reads nothing");
  });

  test("a pasted CRLF is one Enter", () => {
    const { type } = setup();
    const result = type("ls\r\nabc");
    assert.equal(result.line, "ls");
    assert.equal(result.rest, "abc");
  });

  test("a blank line just shows a new prompt", () => {
    const { editor, screen, type } = setup();
    const result = type("   ", "\r");
    assert.equal(result.line, null);
    assert.equal(editor.visible, true);
    assert.equal(screen.text(), "$\n$");
    assert.deepEqual(screen.cursor(), { row: 1, col: 2 });
    type(UP);
    assert.equal(editor.text, "", "blank lines are not remembered");
  });

  test("show() after a command brings back an empty prompt", () => {
    const { editor, screen, type } = setup();
    type("make\r");
    screen.write("done\r\n");
    screen.write(editor.show());
    assert.equal(screen.text(), "$ make\ndone\n$");
    assert.deepEqual(screen.cursor(), { row: 2, col: 2 });
  });
});

describe("Ctrl-C", () => {
  test("marks the line ^C and starts a new, empty one", () => {
    const { editor, screen, type } = setup();
    const result = type("sleep 10", HOME, "\x03");
    assert.equal(result.line, null);
    assert.equal(editor.text, "");
    assert.equal(editor.visible, true);
    assert.equal(screen.text(), "$ sleep 10^C\n$");
    assert.deepEqual(screen.cursor(), { row: 1, col: 2 });
  });

  test("is not remembered in history", () => {
    const { editor, type } = setup();
    type("abc", "\x03", UP);
    assert.equal(editor.text, "");
  });
});

describe("history", () => {
  test("Up and Down walk submitted lines and come back to the draft", () => {
    const { editor, screen, type } = setup();
    type("first\r");
    screen.write(editor.show());
    type("second command\r");
    screen.write(editor.show());
    type("dra", UP);
    assert.equal(editor.text, "second command");
    assert.equal(editor.cursor, editor.text.length);
    type(UP);
    assert.equal(editor.text, "first");
    assertShowsLine(screen, editor, 2);
    type(UP);
    assert.equal(editor.text, "first", "stops at the oldest");
    type(DOWN);
    assert.equal(editor.text, "second command");
    type(DOWN);
    assert.equal(editor.text, "dra");
    assertShowsLine(screen, editor, 2);
    type(DOWN);
    assert.equal(editor.text, "dra", "stops at the draft");
    type("\x10");
    assert.equal(editor.text, "second command", "Ctrl-P is Up");
    type("\x0e");
    assert.equal(editor.text, "dra", "Ctrl-N is Down");
  });

  test("a recalled line can be edited and submitted", () => {
    const { editor, screen, type } = setup();
    type("echo one\r");
    screen.write(editor.show());
    type(UP, BACKSPACE, BACKSPACE, BACKSPACE, "two");
    assert.equal(type("\r").line, "echo two");
    screen.write(editor.show());
    type(UP);
    assert.equal(editor.text, "echo two");
    type(UP);
    assert.equal(editor.text, "echo one", "the original entry is unchanged");
  });

  test("repeats are kept once, and only the newest lines are kept", () => {
    const editor = new LineEditor({ historySize: 3 });
    for (const line of ["a", "b", "b", "c", "d"]) {
      editor.show();
      editor.feed(`${line}\r`);
    }
    assert.deepEqual(editor.history, ["b", "c", "d"]);
  });
});

describe("long lines", () => {
  test("a line wrapping over rows edits in place", () => {
    const { editor, screen, type } = setup({ columns: 10 });
    type("0123456789abcdefghij");
    assert.equal(screen.text(), "$ 01234567\n89abcdefgh\nij");
    assertShowsLine(screen, editor);
    type(HOME, "X");
    assert.equal(screen.text(), "$ X0123456\n789abcdefg\nhij");
    assertShowsLine(screen, editor);
    type(BACKSPACE);
    assert.equal(screen.text(), "$ 01234567\n89abcdefgh\nij");
    assertShowsLine(screen, editor);
    type(END, BACKSPACE, BACKSPACE, BACKSPACE);
    assert.equal(screen.text(), "$ 01234567\n89abcdefg");
    assertShowsLine(screen, editor);
  });

  test("a line that exactly fills its row leaves the cursor on the next row", () => {
    const { editor, screen, type } = setup({ columns: 10 });
    type("01234567");
    assert.deepEqual(screen.cursor(), { row: 1, col: 0 });
    assertShowsLine(screen, editor);
    type(LEFT);
    assert.deepEqual(screen.cursor(), { row: 0, col: 9 });
    type(RIGHT);
    assert.deepEqual(screen.cursor(), { row: 1, col: 0 });
    // Enter starts the output right below, without an empty row.
    type("\r");
    screen.write("out");
    assert.equal(screen.text(), "$ 01234567\nout");
  });

  test("history swaps a long line for a short one and clears the rest", () => {
    const { editor, screen, type } = setup({ columns: 10 });
    type("a very long command line indeed\r");
    screen.write("ok\r\n");
    screen.write(editor.show());
    type("ls", UP);
    assert.equal(screen.text().split("\n").slice(5).join(""),
      "$ a very long command line indeed");
    assertShowsLine(screen, editor, 5);
    type(DOWN);
    assert.ok(screen.text().endsWith("eed\nok\n$ ls"), screen.text());
    assertShowsLine(screen, editor, 5);
  });

  test("Ctrl-C on a wrapped line puts ^C after its end", () => {
    const { screen, type } = setup({ columns: 10 });
    type("0123456789abc", HOME, "\x03");
    assert.equal(screen.text(), "$ 01234567\n89abc^C\n$");
  });

  test("resizing keeps editing right", () => {
    const { editor, type } = setup({ columns: 20 });
    type("0123456789abcdefghij", LEFT, LEFT);
    editor.setColumns(8);
    // The terminal reflows the wrapped line to the new width, as xterm.js does, and keeps
    // its cursor on the same character.
    const reflowed = new Screen(8);
    reflowed.write(editor.prompt + editor.text);
    const { row, col } = expected(editor).cursor;
    Object.assign(reflowed, { x: col, y: row, pendingWrap: false });
    reflowed.write(editor.feed(BACKSPACE).write);
    reflowed.write(editor.feed("XY").write);
    assert.equal(editor.text, "0123456789abcdefgXYij");
    assertShowsLine(reflowed, editor);
    void type;
  });
});

describe("wide and combining characters", () => {
  test("widths follow the terminal's tables", () => {
    assert.equal(codePointWidth("a"), 1);
    assert.equal(codePointWidth("日"), 2);
    assert.equal(codePointWidth("\u0301"), 0);
    assert.equal(codePointWidth("😀"), 2);
    assert.equal(textWidth("日本 a"), 6);
  });

  test("wide characters wrap whole and the cursor steps over them", () => {
    const { editor, screen, type } = setup({ columns: 7 });
    type("日本語日本");
    assert.equal(screen.text(), "$ 日本\n語日本");
    assertShowsLine(screen, editor);
    type(LEFT, LEFT, LEFT);
    assert.equal(editor.cursor, 2);
    assertShowsLine(screen, editor);
    type("x");
    assert.equal(editor.text, "日本x語日本");
    assertShowsLine(screen, editor);
  });

  test("a combining accent joins its letter: one step left, one backspace", () => {
    const { editor, screen, type } = setup();
    type("cafe", "\u0301", "!");
    assert.equal(editor.text, "caf\u00e9!".normalize("NFD"));
    type(LEFT, LEFT);
    assert.equal(editor.cursor, 3);
    type(END, LEFT, BACKSPACE);
    assert.equal(editor.text, "caf!");
    assertShowsLine(screen, editor);
  });

  test("an emoji outside the BMP moves and deletes as one", () => {
    const { editor, screen, type } = setup();
    type("a😀b", LEFT, BACKSPACE);
    assert.equal(editor.text, "ab");
    assertShowsLine(screen, editor);
  });
});

describe("hide and show", () => {
  test("hide erases the prompt; show draws it back with the draft and cursor", () => {
    const { editor, screen, type } = setup({ columns: 10 });
    type("unfinished line", LEFT, LEFT);
    screen.write(editor.hide());
    assert.equal(screen.text(), "");
    assert.equal(editor.hide(), "", "already hidden");
    screen.write("output\r\n");
    screen.write(editor.show());
    const lines = screen.text().split("\n");
    assert.equal(lines[0], "output");
    assert.equal(lines.slice(1).join(""), "$ unfinished line");
    type("X");
    assert.equal(editor.text, "unfinished liXne");
  });

  test("Ctrl-L clears the screen and redraws the line", () => {
    const { editor, screen, type } = setup();
    screen.write("old output\r\n");
    type("ls", "\x0c");
    assert.equal(screen.text(), "$ ls");
    assertShowsLine(screen, editor);
  });
});

describe("escape sequences", () => {
  test("are decoded to keys with their lengths", () => {
    assert.deepEqual(readEscape("\x1b[A", 0), { length: 3, key: "up" });
    assert.deepEqual(readEscape("x\x1b[3~y", 1), { length: 4, key: "delete" });
    assert.deepEqual(readEscape("\x1b[1;5C", 0), { length: 6, key: "wordRight" });
    assert.deepEqual(readEscape("\x1bOB", 0), { length: 3, key: "down" });
    assert.deepEqual(readEscape("\x1b", 0), { length: 1, key: null });
    assert.deepEqual(readEscape("\x1b[12", 0), { length: 4, key: null });
  });
});

describe("random editing", () => {
  // Whatever the keys, the screen shows exactly prompt + line, cursor in place.
  const KEYS = [
    "a", "bc", "日", "é", " ", "\u0301", "😀", "word ", LEFT, LEFT, RIGHT, HOME, END,
    BACKSPACE, BACKSPACE, DELETE, UP, DOWN, "\x15", "\x0b", "\x17", "\x1b[1;5D", "\x1bf",
  ];

  const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });
  function atBoundary(text, offset) {
    return offset === text.length
      || [...graphemes.segment(text)].some(({ index }) => index === offset);
  }

  function random(seed) {
    let state = seed;
    return () => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return state / 2147483648;
    };
  }

  for (const columns of [3, 5, 8, 13, 80]) {
    test(`on a ${columns}-column terminal`, () => {
      const next = random(columns);
      const editor = new LineEditor({ columns });
      for (const line of ["one", "a much longer line than the others", "日本語"]) {
        editor.show();
        editor.feed(`${line}\r`);
      }
      const screen = new Screen(columns);
      screen.write(editor.show());
      for (let step = 0; step < 400; step += 1) {
        const key = KEYS[Math.floor(next() * KEYS.length)];
        screen.write(editor.feed(key).write);
        const want = expected(editor);
        assert.equal(screen.text(), want.text, `after ${step} keys, last ${JSON.stringify(key)}`);
        assert.deepEqual(screen.cursor(), want.cursor, `cursor after ${step} keys`);
        assert.ok(atBoundary(editor.text, editor.cursor), "the cursor is between characters");
      }
    });
  }
});
