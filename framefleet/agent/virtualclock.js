// framefleet's virtual clock, for the page (timecontrol.js) and its dedicated workers
// (workerclock.js): it replaces a global scope's Date, performance.now and
// requestAnimationFrame with a clock only the agent advances, so what they read at frame n is
// t = n / fps, however fast or slow the machine is.
function __framefleetVirtualClock(scope) {
  const EPOCH_MS = Date.UTC(2025, 0, 1); // Date.now() at t = 0
  let nowMs = 0;
  const RealDate = scope.Date;
  class VirtualDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(EPOCH_MS + nowMs);
      else super(...args);
    }
    static now() { return EPOCH_MS + nowMs; }
  }
  scope.Date = VirtualDate;
  scope.performance.now = () => nowMs;
  let frameCallbacks = new Map();
  let nextCallbackId = 1;
  scope.requestAnimationFrame = (callback) => {
    const id = nextCallbackId++;
    frameCallbacks.set(id, callback);
    return id;
  };
  scope.cancelAnimationFrame = (id) => { frameCallbacks.delete(id); };
  return {
    setTime(ms) { nowMs = ms; },
    // The animation frame callbacks due, each once, at the time set.
    runFrameCallbacks() {
      const due = frameCallbacks;
      frameCallbacks = new Map();
      for (const callback of due.values()) callback(nowMs);
    },
  };
}
