// framefleet page runtime, injected before any template script runs.
// It replaces the page's clocks with virtual time that only the agent advances, so frame n
// always shows the template at t = n / fps, however fast or slow the machine is.
(() => {
  const EPOCH_MS = Date.UTC(2025, 0, 1); // Date.now() at t = 0
  const realSetTimeout = window.setTimeout.bind(window);
  const realAddEventListener = window.addEventListener.bind(window);
  let nowMs = 0;

  // Clocks: Date, performance.now and requestAnimationFrame run on virtual time.
  const RealDate = Date;
  class VirtualDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(EPOCH_MS + nowMs);
      else super(...args);
    }
    static now() { return EPOCH_MS + nowMs; }
  }
  window.Date = VirtualDate;
  performance.now = () => nowMs;
  let frameCallbacks = new Map();
  let nextCallbackId = 1;
  window.requestAnimationFrame = (callback) => {
    const id = nextCallbackId++;
    frameCallbacks.set(id, callback);
    return id;
  };
  window.cancelAnimationFrame = (id) => { frameCallbacks.delete(id); };

  // Parameters and readiness.
  // The agent puts the first parameters in a script that runs after this one, before the
  // template's own scripts; setParams replaces them for in-place swaps.
  let swappedParams = null;
  const currentParams = () => swappedParams ?? window.__framefleetParams ?? {};
  const paramHandlers = [];
  const seekHandlers = [];
  let readyHolds = 0;
  let hyperframesListener = false; // a 'message' listener: a HyperFrames-style template
  let hyperframesReady = true;
  let paramsListener = false; // a 'framefleet:params' listener
  window.addEventListener = function (type, ...rest) {
    if (type === "message") hyperframesListener = true;
    if (type === "framefleet:params") paramsListener = true;
    return realAddEventListener(type, ...rest);
  };
  realAddEventListener("hf-params-ready", () => { hyperframesReady = true; });

  window.framefleet = Object.freeze({
    get params() { return currentParams(); },
    // fn(params) now and after every parameter swap.
    onParams(fn) { paramHandlers.push(fn); fn(currentParams()); },
    // fn(seconds) before every frame is captured: draw the frame for that time. When fn
    // returns a promise (an asynchronous draw), the frame is captured after it settles.
    onSeek(fn) { seekHandlers.push(fn); },
    // Holds the first frame until the returned function is called (async loading).
    delayReady() {
      readyHolds += 1;
      let released = false;
      return () => { if (!released) { released = true; readyHolds -= 1; } };
    },
  });

  // Animations started at virtual time s play from s: remember when each one first appeared.
  let animationStarts = new WeakMap();

  window.__framefleet = {
    // Reuses the loaded page for the next variant: time back to 0, new parameters in place.
    // Only for templates that listen for parameter changes; false means "reload instead".
    swap(next) {
      if (paramHandlers.length === 0 && !paramsListener && !hyperframesListener) return false;
      nowMs = 0;
      animationStarts = new WeakMap();
      this.setParams(next);
      return true;
    },
    setParams(next) {
      swappedParams = next;
      for (const fn of paramHandlers) fn(next);
      window.dispatchEvent(new CustomEvent("framefleet:params", { detail: next }));
      if (hyperframesListener) {
        hyperframesReady = false;
        window.postMessage({ type: "hf-params", params: next }, "*");
      }
    },
    async ready() {
      if (hyperframesListener && hyperframesReady) {
        hyperframesReady = false;
        window.postMessage({ type: "hf-params", params: currentParams() }, "*");
      }
      await document.fonts.ready;
      await Promise.all([...document.images].map((img) => img.decode().catch(() => {})));
      while (readyHolds > 0 || !hyperframesReady) {
        await new Promise((resolve) => realSetTimeout(resolve, 5));
      }
      await document.fonts.ready;
    },
    async seek(ms) {
      nowMs = ms;
      const callbacks = frameCallbacks;
      frameCallbacks = new Map();
      for (const callback of callbacks.values()) callback(ms);
      await Promise.all(seekHandlers.map((fn) => fn(ms / 1000)));
      for (const animation of document.getAnimations()) {
        if (!animationStarts.has(animation)) animationStarts.set(animation, ms);
        animation.pause();
        animation.currentTime = Math.max(0, ms - animationStarts.get(animation));
      }
      const seeks = [];
      for (const media of document.querySelectorAll("video, audio")) {
        media.pause();
        const t = ms / 1000;
        if (Math.abs(media.currentTime - t) > 0.0005) {
          seeks.push(new Promise((resolve) => media.addEventListener("seeked", resolve, { once: true })));
          media.currentTime = t;
        }
      }
      await Promise.all(seeks);
    },
  };
})();
