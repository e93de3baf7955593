// framefleet worker runtime: put in front of a dedicated worker's own script (the agent serves
// the script so when the page's runtime starts it: timecontrol.js), after virtualclock.js. The
// worker's clocks run on the page's virtual time, which the page sets before every frame; the
// worker answers each setting, so the frame waits until the worker has it.
(() => {
  const clock = __framefleetVirtualClock(self);
  // Registered before the worker's own script runs, so it hears the page's clock first and
  // the worker's handlers never see it.
  self.addEventListener("message", (event) => {
    const data = event.data;
    if (!data || typeof data !== "object" || !("__framefleetTime" in data)) return;
    event.stopImmediatePropagation();
    clock.setTime(data.__framefleetTime);
    clock.runFrameCallbacks();
    self.postMessage({ __framefleetAck: data.seq });
  });
})();
