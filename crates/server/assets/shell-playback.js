// Plays a shell session's recording (asciicast v2) back in xterm.js, which
// this server serves itself (assets/vendor). Playback only: the console
// never opens a live shell (console/shells.rs says why).
//
// The Content-Security-Policy allows no inline style. xterm.js writes its
// cell sizes and theme into <style> elements and some colours into style
// attributes; `cssomStyles` routes both through the CSSOM (constructed
// style sheets, `element.style`), which the policy does not restrict, so
// the policy stays `style-src 'self'`.
"use strict";

(function () {
  function cssomStyles() {
    const create = Document.prototype.createElement;
    Document.prototype.createElement = function (name, options) {
      if (String(name).toLowerCase() !== "style") return create.call(this, name, options);
      // An inert element where the <style> would be; its text becomes a constructed sheet.
      const doc = this;
      const holder = create.call(doc, "bulwark-style");
      const sheet = new CSSStyleSheet();
      doc.adoptedStyleSheets = [...doc.adoptedStyleSheets, sheet];
      let text = "";
      const set = (value) => { text = String(value); sheet.replaceSync(text); };
      Object.defineProperty(holder, "textContent", { get: () => text, set });
      Object.defineProperty(holder, "innerText", { get: () => text, set });
      Object.defineProperty(holder, "sheet", { get: () => sheet });
      const remove = holder.remove.bind(holder);
      holder.remove = () => {
        doc.adoptedStyleSheets = doc.adoptedStyleSheets.filter((s) => s !== sheet);
        remove();
      };
      return holder;
    };
    const setAttribute = Element.prototype.setAttribute;
    Element.prototype.setAttribute = function (name, value) {
      if (String(name).toLowerCase() === "style" && this.style) {
        this.style.cssText = String(value);
        return;
      }
      return setAttribute.call(this, name, value);
    };
  }

  // The header and the output events of an asciicast v2 file. Input
  // events are left out (the shell's echo is in the output); a marker
  // (the agent's "recording truncated") is shown as a line of its own.
  function parseCast(text) {
    const lines = text.split("\n");
    let header;
    try { header = JSON.parse(lines[0]); } catch { header = null; }
    if (!header || header.version !== 2) throw new Error("this is not an asciicast v2 recording");
    const events = [];
    let last = 0;
    let skipped = 0;
    for (let i = 1; i < lines.length; i++) {
      if (!lines[i].trim()) continue;
      let e;
      try { e = JSON.parse(lines[i]); } catch { skipped++; continue; }
      if (!Array.isArray(e) || typeof e[0] !== "number" || !isFinite(e[0]) || typeof e[2] !== "string") {
        skipped++;
        continue;
      }
      last = Math.max(last, e[0]); // time never runs backwards
      if (e[1] === "o") events.push([last, e[2]]);
      else if (e[1] === "m") events.push([last, "\r\n\x1b[7m[" + e[2].replace(/[\x00-\x1f\x7f]/g, "") + "]\x1b[0m\r\n"]);
    }
    const size = (v, lo, hi, fallback) => (Number.isInteger(v) ? Math.min(hi, Math.max(lo, v)) : fallback);
    return {
      cols: size(header.width, 2, 400, 80),
      rows: size(header.height, 2, 120, 24),
      events,
      duration: last,
      skipped,
    };
  }

  function clockText(secs) {
    const s = Math.floor(secs);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  function player(root, cast, term) {
    const play = document.getElementById("play");
    const toEnd = document.getElementById("to-end");
    const progress = document.getElementById("progress");
    const clock = document.getElementById("clock");
    let index = 0;
    let position = 0;
    let speed = 1;
    let playing = false;
    let last = 0;
    let timer = null;

    function show() {
      progress.value = String(position);
      clock.textContent = clockText(position) + " / " + clockText(cast.duration);
      const ended = position >= cast.duration && index >= cast.events.length;
      play.textContent = playing ? "Pause" : ended ? "Replay" : "Play";
      root.setAttribute("data-state", playing ? "playing" : ended ? "ended" : "paused");
    }
    // Shows the terminal as it was `to` seconds in (back: from the start).
    function seek(to) {
      to = Math.min(cast.duration, Math.max(0, to));
      if (to < position) {
        term.reset();
        index = 0;
      }
      let chunk = "";
      while (index < cast.events.length && cast.events[index][0] <= to) {
        chunk += cast.events[index][1];
        index++;
      }
      if (chunk) term.write(chunk);
      position = to;
      show();
    }
    function tick() {
      const now = performance.now();
      seek(position + ((now - last) / 1000) * speed);
      last = now;
      if (index >= cast.events.length) {
        stop();
        return;
      }
      timer = setTimeout(tick, 33);
    }
    function stop() {
      playing = false;
      clearTimeout(timer);
      timer = null;
      show();
    }
    function start() {
      if (index >= cast.events.length) seek(0);
      playing = true;
      last = performance.now();
      tick();
    }

    play.addEventListener("click", () => (playing ? stop() : start()));
    toEnd.addEventListener("click", () => {
      stop();
      seek(cast.duration);
    });
    progress.max = String(cast.duration);
    progress.addEventListener("input", () => {
      seek(Number(progress.value));
      last = performance.now();
    });
    for (const button of document.querySelectorAll("button.speed")) {
      button.addEventListener("click", () => {
        speed = Number(button.getAttribute("data-speed")) || 1;
        for (const other of document.querySelectorAll("button.speed")) {
          other.classList.toggle("speed-current", other === button);
        }
        root.setAttribute("data-speed", String(speed));
      });
    }
    play.disabled = false;
    toEnd.disabled = false;
    show();
  }

  async function load() {
    const root = document.getElementById("terminal");
    const status = document.getElementById("player-status");
    if (!root || !status) return;
    if (typeof Terminal !== "function") {
      status.textContent = "The terminal emulator did not load.";
      return;
    }
    let response;
    try {
      response = await fetch(root.getAttribute("data-recording"), { credentials: "same-origin" });
    } catch {
      status.textContent = "The recording could not be fetched.";
      return;
    }
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = (await response.json()).error.message || message; } catch { /* not JSON */ }
      status.textContent = "The server did not serve the recording: " + message;
      root.setAttribute("data-state", "refused");
      return;
    }
    let cast;
    try {
      cast = parseCast(await response.text());
    } catch (error) {
      status.textContent = "The recording cannot be played: " + error.message;
      root.setAttribute("data-state", "refused");
      return;
    }
    cssomStyles();
    const term = new Terminal({
      cols: cast.cols,
      rows: cast.rows,
      disableStdin: true,
      cursorBlink: false,
      scrollback: 10000,
      fontSize: 13,
      // Links a recording prints are text, never followed.
      linkHandler: { activate() {} },
    });
    term.open(root);
    status.textContent = cast.events.length + " pieces of output over " + clockText(cast.duration) +
      (cast.skipped ? " (" + cast.skipped + " lines that are not asciicast events left out)" : "") + ".";
    player(root, cast, term);
  }

  document.addEventListener("DOMContentLoaded", load);
})();
