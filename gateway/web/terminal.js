// The web terminal: xterm.js on the page, a websocket to the gateway, a local prompt.
//
// While no command runs, keystrokes are edited locally (line-editor.js) and Enter sends
// the line as a `command` frame. From then until the command's `exit`, keystrokes go to
// the command as `stdin`. Every event the worker publishes carries a `seq`; the page
// keeps the last one, and after any disconnect it reconnects with a fresh single-use
// token and asks the gateway to `resume` after it, so nothing is missed or shown twice.
//
// Query parameters: project, terminal (default sample / term-1), tokenUrl (default
// /dev/token, the gateway's development endpoint; a real deployment points it at the
// IDE backend, which must be same-origin for the page's Content-Security-Policy).

import { LineEditor } from "./line-editor.js";

const params = new URLSearchParams(location.search);
const PROJECT = params.get("project") || "sample";
const TERMINAL = params.get("terminal") || "term-1";
const TOKEN_URL = params.get("tokenUrl") || "/dev/token";

// Close codes from the gateway (see gateway/connection.py).
const CLOSE_RESTARTING = 1012;
const CLOSE_SLOW_CLIENT = 4008;

const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 15000;
// A connection that stayed up this long was healthy: the next drop starts backoff over.
const HEALTHY_AFTER_MS = 5000;
// The gateway's limits: a frame of at most 64 KiB (a larger one closes the connection),
// at most 16 Ki characters of stdin per frame.
const MAX_FRAME_BYTES = 64 * 1024;
const STDIN_CHUNK = 8192;
// Keystrokes typed before a queued command starts are held for it, up to this many.
const TYPEAHEAD_LIMIT = 4096;

const DIM = "\x1b[2m";
const RED = "\x1b[31m";
const RESET = "\x1b[0m";

/**
 * One websocket at a time to the terminal, replaced after every close: fetch a token,
 * connect, and on any close or failure try again with exponential backoff and jitter.
 */
class Connection {
  constructor({ onOpen, onFrame, onStatus }) {
    this.onOpen = onOpen;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this._socket = null;
    this._failures = 0;
    this._timer = null;
    this._openedAt = 0;
    // Coming back online should not wait out a long backoff.
    window.addEventListener("online", () => this._connectNow());
  }

  get isOpen() {
    return this._socket !== null && this._socket.readyState === WebSocket.OPEN;
  }

  start() {
    this._connect();
  }

  /** Send one frame; false when there is no open connection to send it on. */
  send(frame) {
    if (!this.isOpen) return false;
    this._socket.send(JSON.stringify(frame));
    return true;
  }

  _connectNow() {
    if (this._timer === null) return; // connecting or connected already
    clearTimeout(this._timer);
    this._timer = null;
    this._connect();
  }

  async _connect() {
    this.onStatus("connecting", "connecting…");
    let token;
    try {
      token = await fetchToken();
    } catch (error) {
      this._retry(`no token: ${error.message}`);
      return;
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/terminals/${encodeURIComponent(PROJECT)}/`
      + `${encodeURIComponent(TERMINAL)}?token=${encodeURIComponent(token)}`;
    const socket = new WebSocket(url);
    this._socket = socket;
    socket.addEventListener("open", () => {
      this._openedAt = Date.now();
      this.onStatus("connected", "connected");
      this.onOpen();
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        console.warn("ignored a frame that is not JSON", event.data);
        return;
      }
      this.onFrame(frame);
    });
    // A refused handshake or a dropped network ends here too (as code 1006).
    socket.addEventListener("close", (event) => {
      if (this._socket !== socket) return;
      this._socket = null;
      if (this._openedAt && Date.now() - this._openedAt >= HEALTHY_AFTER_MS) this._failures = 0;
      this._openedAt = 0;
      this._retry(closeReason(event));
    });
  }

  _retry(reason) {
    const delay = backoffDelay(this._failures);
    this._failures += 1;
    this.onStatus("reconnecting", `disconnected (${reason}); reconnecting in `
      + `${Math.max(1, Math.round(delay / 1000))} s…`);
    this._timer = setTimeout(() => {
      this._timer = null;
      this._connect();
    }, delay);
  }
}

async function fetchToken() {
  const url = new URL(TOKEN_URL, location.href);
  url.searchParams.set("project", PROJECT);
  url.searchParams.set("terminal", TERMINAL);
  const response = await fetch(url, { cache: "no-store", credentials: "same-origin" });
  if (!response.ok) throw new Error(`HTTP ${response.status} from ${url.pathname}`);
  const { token } = await response.json();
  if (typeof token !== "string" || !token) throw new Error("the answer had no token");
  return token;
}

function backoffDelay(failures) {
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** failures);
  // Jitter, so clients dropped together by a restarting gateway do not return together.
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function closeReason(event) {
  if (event.code === CLOSE_RESTARTING) return "the gateway is restarting";
  if (event.code === CLOSE_SLOW_CLIENT) return "output came faster than it was shown";
  if (event.code === 1006) return "connection lost";
  return event.reason || `code ${event.code}`;
}

/**
 * What the terminal shows and where keystrokes go: the local prompt, a command waiting
 * for a worker, or a running command.
 */
class TerminalSession {
  constructor(term) {
    this.term = term;
    this.editor = new LineEditor({ prompt: "$ ", columns: term.cols });
    this.connection = null;
    this.lastSeq = 0;
    // Set from sending `resume` until its replay begins (see receive).
    this.resumingAfter = null;
    // True when the next thing written starts a line (the prompt needs column 0).
    this.atLineStart = true;
    // The command this page sent: awaiting the gateway's `queued`, then its `started`.
    this.awaitingQueued = false;
    this.pendingCommandId = null;
    // The terminal's running command (this page's or another tab's), from its `started`.
    this.runningCommandId = null;
    this.typeahead = "";
    this.onActivity = () => {};
  }

  get mode() {
    if (this.runningCommandId !== null) return "running";
    if (this.awaitingQueued || this.pendingCommandId !== null) return "waiting";
    return "prompt";
  }

  start() {
    this.showPrompt();
  }

  // ---- the connection ---------------------------------------------------------------

  connected() {
    // `resume` goes first: the gateway holds live events until the client's first frame
    // says where it stopped. After 0 on the first connection, so the terminal's kept
    // history is shown again.
    this.connection.send({ type: "resume", after: this.lastSeq });
    this.resumingAfter = this.lastSeq;
    const { cols, rows } = this.term;
    this.connection.send({ type: "resize", cols, rows });
    if (this.awaitingQueued) {
      // The command went out on the old connection and no answer came back; it may
      // have been queued or not. If it was, its events arrive with the resume.
      this.awaitingQueued = false;
      this.note(`${DIM}[connection lost while sending the command; it may still run]${RESET}`);
    }
  }

  receive(frame) {
    if (typeof frame.seq === "number") {
      if (this.resumingAfter !== null) {
        // The replay of a `resume` starts right after resumingAfter, in order. A live
        // event the gateway forwarded before it acted on the resume is skipped: the
        // replay includes it, and showing it first would put it out of order.
        if (frame.seq !== this.resumingAfter + 1) return;
        this.resumingAfter = null;
      }
      // Each seq is shown once: the replay repeats what came live just before it.
      if (frame.seq <= this.lastSeq) return;
      this.lastSeq = frame.seq;
    }
    switch (frame.type) {
      case "queued":
        this.awaitingQueued = false;
        this.pendingCommandId = frame.commandId;
        break;
      case "started":
        this.started(frame);
        break;
      case "output":
        this.output(frame.data);
        break;
      case "exit":
        this.exited(frame);
        break;
      case "error":
        this.failed(frame);
        break;
      default:
        console.warn("ignored a frame of unknown type", frame);
    }
    this.onActivity(this.mode);
  }

  started(frame) {
    this.hidePrompt();
    this.runningCommandId = frame.commandId;
    if (frame.commandId === this.pendingCommandId) this.pendingCommandId = null;
    if (this.typeahead) {
      this.sendStdin(this.typeahead);
      this.typeahead = "";
    }
  }

  output(data) {
    if (!data) return;
    const prompting = this.hidePrompt();
    this.write(data);
    if (prompting) this.showPrompt();
  }

  exited(frame) {
    if (frame.commandId === this.runningCommandId) this.runningCommandId = null;
    if (frame.commandId === this.pendingCommandId) this.pendingCommandId = null;
    const status = frame.signal ? `killed by ${frame.signal}` : `exit ${frame.exitCode}`;
    const reason = frame.reason ? ` (${frame.reason})` : "";
    this.note(`${DIM}[${status}${reason}]${RESET}`);
  }

  failed(frame) {
    const fromWorker = typeof frame.seq === "number";
    if (frame.code === "history_reset") {
      // Redis lost the terminal's history and numbering starts again from 1.
      this.lastSeq = 0;
      this.resumingAfter = null;
    }
    if (frame.code === "history_truncated" && this.resumingAfter !== null) {
      // The replay starts later than asked: whatever seq comes next begins it.
      this.resumingAfter = null;
      if (this.lastSeq === 0) {
        // Expected on a first load of a long-lived terminal: not an error.
        this.note(`${DIM}[earlier output is no longer kept]${RESET}`);
        return;
      }
    }
    if (fromWorker && frame.code === "invalid_command"
        && frame.commandId === this.pendingCommandId) {
      this.pendingCommandId = null; // refused by the worker: it will never run
    }
    if (!fromWorker && this.awaitingQueued
        && ["unavailable", "bad_frame", "rate_limited"].includes(frame.code)) {
      this.awaitingQueued = false; // the gateway did not queue the command
    }
    this.note(`${RED}[${frame.code}: ${frame.message}]${RESET}`);
  }

  // ---- keystrokes ---------------------------------------------------------------------

  key(data) {
    switch (this.mode) {
      case "prompt": {
        const { write, line, rest } = this.editor.feed(data);
        this.write(write);
        if (line !== null) {
          this.runCommand(line);
          if (rest) this.key(rest);
        }
        break;
      }
      case "waiting":
        // Input published before the worker starts the command would be lost: hold it.
        this.typeahead = (this.typeahead + data).slice(-TYPEAHEAD_LIMIT);
        break;
      case "running":
        // Ctrl-C is "\x03" like any key; the command's terminal turns it into SIGINT.
        this.sendStdin(data);
        break;
    }
  }

  runCommand(line) {
    this.atLineStart = true; // the editor ended the line
    const frame = { type: "command", command: line };
    const size = new TextEncoder().encode(JSON.stringify(frame)).length;
    if (size > MAX_FRAME_BYTES) {
      this.note(`${RED}[the command is too long: ${size} bytes, at most ${MAX_FRAME_BYTES} `
        + `can be sent]${RESET}`);
      return;
    }
    if (!this.connection.send(frame)) {
      this.note(`${RED}[not connected: the command was not sent]${RESET}`);
      return;
    }
    this.awaitingQueued = true;
    this.typeahead = "";
    this.onActivity(this.mode);
  }

  sendStdin(data) {
    for (let start = 0; start < data.length;) {
      let end = Math.min(data.length, start + STDIN_CHUNK);
      // Never split a surrogate pair between two frames.
      if (end < data.length && /[\ud800-\udbff]/.test(data[end - 1])) end -= 1;
      if (!this.connection.send({ type: "stdin", data: data.slice(start, end) })) return;
      start = end;
    }
  }

  resized(cols, rows) {
    this.editor.setColumns(cols);
    this.connection?.send({ type: "resize", cols, rows });
  }

  // ---- the screen -----------------------------------------------------------------------

  write(text) {
    if (!text) return;
    this.term.write(text);
    this.atLineStart = text.endsWith("\n");
  }

  /** A line of the page's own (status, error) between outputs, then the prompt if due. */
  note(text) {
    this.hidePrompt();
    if (!this.atLineStart) this.write("\r\n");
    this.write(`${text}\r\n`);
    this.showPrompt(); // (again) if no command runs
  }

  showPrompt() {
    if (this.editor.visible || this.mode !== "prompt") return;
    if (!this.atLineStart) this.write("\r\n");
    this.term.write(this.editor.show());
    this.atLineStart = false;
  }

  /** Take the prompt off the screen; true if it was showing. */
  hidePrompt() {
    if (!this.editor.visible) return false;
    this.term.write(this.editor.hide());
    this.atLineStart = true; // the prompt began at column 0, where the cursor now is
    return true;
  }
}

// ---- the page -----------------------------------------------------------------------

function setStatus(state, text) {
  const status = document.getElementById("status");
  if (status.dataset.state === state && status.textContent === text) return;
  status.dataset.state = state;
  status.textContent = text;
}

function main() {
  document.getElementById("title").textContent = `${PROJECT} / ${TERMINAL}`;
  document.title = `${PROJECT} / ${TERMINAL}`;
  // xterm.js and its fit addon are classic scripts (vendor/, copied from npm by
  // `make web-assets`) that define globals before this module runs.
  if (typeof window.Terminal !== "function" || typeof window.FitAddon !== "object") {
    setStatus("failed", "xterm.js is missing: run `make web-assets` and restart the gateway");
    return;
  }
  const term = new window.Terminal({
    cursorBlink: true,
    fontFamily: '"DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace',
    fontSize: 14,
    scrollback: 5000,
    theme: { background: "#1e1f22", foreground: "#d8dade", cursor: "#d8dade" },
  });
  const fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  fit.fit();

  const session = new TerminalSession(term);
  let connectionState = "connecting";
  let connectionText = "connecting…";
  const render = () => {
    const activity = { waiting: " · command queued, waiting for a worker",
      running: " · command running", prompt: "" }[session.mode];
    setStatus(connectionState, connectionText + (connectionState === "connected" ? activity : ""));
  };
  session.onActivity = render;
  session.connection = new Connection({
    onOpen: () => session.connected(),
    onFrame: (frame) => session.receive(frame),
    onStatus: (state, text) => {
      connectionState = state;
      connectionText = text;
      render();
    },
  });

  term.onData((data) => session.key(data));
  term.onResize(({ cols, rows }) => session.resized(cols, rows));
  // Refit at most once a frame while the window is being resized.
  let refit = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(refit);
    refit = requestAnimationFrame(() => fit.fit());
  });

  session.start();
  session.connection.start();
  term.focus();
}

main();
