// Fakes shared by the client's and the adapters' tests: a WebSocket the test drives
// by hand and a clock that moves only when told, so no test waits on real time.
import { ReactiveClient } from "../../reactive_celery/static/reactive_celery/reactive.js";

/** Timers that run only when the test advances the clock. */
export class FakeClock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.nextId = 1;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { fn, at: this.now + ms, ms });
      return id;
    };
    this.clearTimeout = (id) => this.timers.delete(id);
  }

  /** Delays of the timers now waiting, in the order they were set. */
  get waiting() {
    return [...this.timers.values()].map((timer) => timer.ms);
  }

  advance(ms) {
    const target = this.now + ms;
    for (;;) {
      const due = [...this.timers].filter(([, t]) => t.at <= target).sort((a, b) => a[1].at - b[1].at);
      if (!due.length) break;
      const [id, timer] = due[0];
      this.timers.delete(id);
      this.now = timer.at;
      timer.fn();
    }
    this.now = target;
  }
}

/** A client wired to fake sockets; `ws()` is the newest socket. */
export function setup(options = {}) {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.readyState = 0;
      this.closedWith = undefined;
      sockets.push(this);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.sent.push(JSON.parse(data));
    }
    close(code) {
      this.closedWith = code ?? null;
      this.readyState = 3;
    }
    // Test controls.
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    push(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code });
    }
    last(type) {
      return this.sent.filter((frame) => !type || frame.type === type).at(-1);
    }
  }
  const clock = new FakeClock();
  const states = [];
  const client = new ReactiveClient("ws://test/ws/reactive/", {
    WebSocket: FakeSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => 0.5,
    pingInterval: 0,
    ...options,
  });
  client.onStateChange = (state) => states.push(state);
  return { client, clock, sockets, states, ws: () => sockets.at(-1) };
}
