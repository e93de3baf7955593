// framefleet worker runtime: put in front of a dedicated worker's own script (the agent serves
// the script so when the page's runtime starts it: timecontrol.js). The worker's Date,
// performance.now and requestAnimationFrame run on the page's virtual time, which the page
// sets before every frame; the worker answers each setting, so the frame waits until the worker
// has it.
(() => {
  const EPOCH_MS = Date.UTC(2025, 0, 1); // Date.now() at t = 0, as on the page
  let nowMs = 0;
  const RealDate = Date;
  class VirtualDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(EPOCH_MS + nowMs);
      else super(...args);
    }
    static now() { return EPOCH_MS + nowMs; }
  }
  self.Date = VirtualDate;
  performance.now = () => nowMs;
  let frameCallbacks = new Map();
  let nextCallbackId = 1;
  self.requestAnimationFrame = (callback) => {
    const id = nextCallbackId++;
    frameCallbacks.set(id, callback);
    return id;
  };
  self.cancelAnimationFrame = (id) => { frameCallbacks.delete(id); };
  // Registered before the worker's own script runs, so it hears the page's clock first and
  // the worker's handlers never see it.
  self.addEventListener("message", (event) => {
    const data = event.data;
    if (!data || typeof data !== "object" || !("__framefleetTime" in data)) return;
    event.stopImmediatePropagation();
    nowMs = data.__framefleetTime;
    const due = frameCallbacks;
    frameCallbacks = new Map();
    for (const callback of due.values()) callback(nowMs);
    self.postMessage({ __framefleetAck: data.seq });
  });
})();
