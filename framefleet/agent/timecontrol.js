// framefleet page runtime, injected before any template script runs.
// It replaces the page's clocks with virtual time that only the agent advances, so frame n
// always shows the template at t = n / fps, however fast or slow the machine is.
(() => {
  const realSetTimeout = window.setTimeout.bind(window);
  const realClearTimeout = window.clearTimeout.bind(window);
  const realAddEventListener = window.addEventListener.bind(window);
  // Clocks: Date, performance.now and requestAnimationFrame run on virtual time.
  const clock = __framefleetVirtualClock(window);

  // Dedicated workers run on the same clock: each is started from its script's URL marked
  // WORKER_MARK, which the agent serves with the worker runtime (workerclock.js) in front;
  // seek(ms) sets every live worker's time and waits for its answer (at most WORKER_WAIT_MS
  // of real time: a worker that closed itself never answers).
  const WORKER_MARK = "__framefleet_worker";
  const WORKER_WAIT_MS = 1000;
  const workers = new Set();
  const RealWorker = window.Worker;
  if (RealWorker) {
    window.Worker = function Worker(url, options) {
      const script = new URL(url, document.baseURI);
      // A script from the job's files (not a blob: or data: URL, which a mark would break).
      const fromBundle = script.origin === location.origin && script.protocol === location.protocol;
      if (!fromBundle) return new RealWorker(url, options); // on its own clocks
      script.searchParams.set(WORKER_MARK, "1");
      const worker = new RealWorker(script.href, options);
      const peer = { seq: 0, answers: new Map() };
      worker.addEventListener("message", (event) => {
        const data = event.data;
        if (!data || typeof data !== "object" || !("__framefleetAck" in data)) return;
        event.stopImmediatePropagation();
        const waiting = peer.answers.get(data.__framefleetAck);
        peer.answers.delete(data.__framefleetAck);
        if (waiting) { realClearTimeout(waiting.timer); waiting.resolve(); }
      });
      worker.addEventListener("error", () => workers.delete(peer));
      peer.setTime = (ms) => new Promise((resolve) => {
        const seq = ++peer.seq;
        const timer = realSetTimeout(() => {
          peer.answers.delete(seq);
          workers.delete(peer); // silent: closed or stuck
          resolve();
        }, WORKER_WAIT_MS);
        peer.answers.set(seq, { resolve, timer });
        worker.postMessage({ __framefleetTime: ms, seq });
      });
      const terminate = worker.terminate.bind(worker);
      worker.terminate = () => { workers.delete(peer); terminate(); };
      workers.add(peer);
      return worker;
    };
    window.Worker.prototype = RealWorker.prototype;
  }

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
    // returns a Promise (an async function: an asynchronous draw), the frame is captured after
    // it settles. Other return values, thenables included (a GSAP timeline is one, settling
    // only when it completes), are ignored.
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

  // A failure with a framefleet error class: the agent reports it as that class.
  const fail = (errorClass, message) => new Error(`framefleet:${errorClass}: ${message}`);
  const mediaLoaded = (media) => new Promise((resolve, reject) => {
    const failed = () => reject(fail("TEMPLATE_LOAD_ERROR",
      `media ${media.id ? "#" + media.id + " " : ""}(${media.currentSrc || media.src || "no src"}) could not load`));
    if (media.error) failed();
    else if (media.readyState >= 2) resolve(); // HAVE_CURRENT_DATA: a picture to seek
    else {
      media.addEventListener("loadeddata", resolve, { once: true });
      media.addEventListener("error", failed, { once: true });
      if (media.preload === "none") media.preload = "auto";
      if (media.networkState === HTMLMediaElement.NETWORK_NO_SOURCE) failed();
    }
  });

  const drawnVideos = []; // <video> elements whose pictures the agent draws

  // A media element's rate as HyperFrames reads it: data-playback-rate, else the element's
  // defaultPlaybackRate; not a positive number means 1; clamped to 0.1..5.
  function playbackRate(media) {
    const authored = parseFloat(media.getAttribute("data-playback-rate"));
    const raw = Number.isFinite(authored) && authored > 0 ? authored : media.defaultPlaybackRate;
    return Number.isFinite(raw) && raw > 0 ? Math.min(5, Math.max(0.1, raw)) : 1;
  }

  // Same-origin frames (<iframe>) run this runtime too (it is injected into every frame): the
  // page's ready() and seek() carry on into theirs, so their clocks follow the frame's too.
  const childFrames = () => [...document.querySelectorAll("iframe, frame")].flatMap((frame) => {
    try {
      const runtime = frame.contentWindow && frame.contentWindow.__framefleet;
      return runtime ? [{ frame, runtime }] : [];
    } catch (e) {
      return []; // another origin: nothing of the bundle, never reached
    }
  });
  // Settled: loaded from the bundle, or not ours to wait for (another origin, or refused and
  // showing an error page, which this page cannot read).
  const frameSettled = (frame) => {
    let doc = null;
    try { doc = frame.contentDocument; } catch (e) { return true; }
    return !doc || (doc.readyState === "complete" && doc.URL !== "about:blank");
  };
  const sameOrigin = (frame) => {
    try { return new URL(frame.getAttribute("src"), document.baseURI).origin === location.origin; } catch (e) { return false; }
  };
  const frameLoaded = async (frame) => {
    while (sameOrigin(frame) && !frameSettled(frame)) await new Promise((resolve) => realSetTimeout(resolve, 5));
  };

  window.__framefleet = {
    fail,
    // What a page runtime (framefleet/agent/hyperframes.js) adds: awaited in ready() after the page's
    // own readiness, and called in seek(ms) before CSS animations and media are set.
    hooks: { ready: [], seek: [] },
    // Where a media element plays at t seconds: the default is t itself; null keeps it paused
    // where it is (outside its clip).
    mediaTime: (media, t) => t,
    seekHandlerCount: () => seekHandlers.length,
    // Where a media element sits on the video's timeline (seconds): by default it plays from
    // t = 0 to its end. The HyperFrames runtime answers from its clip windows.
    clipTiming: (media) => ({ start: 0, end: null, mediaStart: 0 }),
    // The media the soundtrack mixes: <audio> unless muted; <video> unless muted, or when it
    // declares data-has-audio="true". Paths are the files' places in the job's bundle.
    soundClips() {
      const clips = [];
      for (const media of document.querySelectorAll("video, audio")) {
        const declared = media.getAttribute("data-has-audio") === "true";
        if (media.muted && !(media.tagName === "VIDEO" && declared)) continue;
        const src = media.__ffSrc || media.currentSrc || media.src;
        if (!src) continue;
        const volume = parseFloat(media.getAttribute("data-volume"));
        clips.push({
          path: decodeURIComponent(new URL(src, document.baseURI).pathname.slice(1)),
          ...this.clipTiming(media),
          volume: Number.isFinite(volume) ? volume : media.volume,
          // Time-stretched at the same pitch, as HyperFrames' mixer does (FFmpeg atempo).
          rate: playbackRate(media),
          keepPitch: true,
        });
      }
      return clips;
    },
    // Hands every <video> to the agent, which draws its pictures (framefleet/agent/video_clips.py): the
    // element keeps its box and styles, loses its src, and shows the picture given to
    // drawVideo as its background. Returns where each plays, as soundClips does.
    takeVideos() {
      for (const video of document.querySelectorAll("video")) {
        const src = video.currentSrc || video.src;
        if (video.__ffSrc || !src) continue;
        const style = getComputedStyle(video);
        video.style.width = `${video.offsetWidth}px`;
        video.style.height = `${video.offsetHeight}px`;
        video.style.backgroundSize = { fill: "100% 100%", cover: "cover", none: "auto" }[style.objectFit] || "contain";
        video.style.backgroundPosition = style.objectPosition;
        video.style.backgroundRepeat = "no-repeat";
        video.__ffSrc = src;
        video.pause();
        video.removeAttribute("src");
        for (const source of video.querySelectorAll("source")) source.remove();
        video.load();
        drawnVideos.push(video);
      }
      return drawnVideos.map((video, index) => ({
        index,
        path: decodeURIComponent(new URL(video.__ffSrc, document.baseURI).pathname.slice(1)),
        ...this.clipTiming(video),
        rate: playbackRate(video),
      }));
    },
    async drawVideo(index, dataUrl) {
      const video = drawnVideos[index];
      const url = URL.createObjectURL(await (await fetch(dataUrl)).blob());
      const image = new Image();
      image.src = url;
      await image.decode();
      if (video.__ffPicture) URL.revokeObjectURL(video.__ffPicture);
      video.__ffPicture = url;
      video.style.backgroundImage = `url("${url}")`;
    },
    // Set while the frame waits on onSeek promises: the agent reads it after a timeout.
    waitingOnSeek: false,
    // Reuses the loaded page for the next variant: time back to 0, new parameters in place.
    // Only for templates that listen for parameter changes; false means "reload instead".
    swap(next) {
      if (paramHandlers.length === 0 && !paramsListener && !hyperframesListener) return false;
      clock.setTime(0);
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
      for (const hook of this.hooks.ready) await hook();
      const frames = [...document.querySelectorAll("iframe[src], frame[src]")];
      await Promise.all(frames.map(frameLoaded));
      for (const { runtime } of childFrames()) await runtime.ready();
      // A clip whose media cannot load fails the job, not a render without it.
      await Promise.all([...document.querySelectorAll("video, audio")].map(mediaLoaded));
      await document.fonts.ready;
      // Animations the page has once loaded started at t = 0, even when the first frame
      // sought is later (a chunk of a video): they are not dated by when seek first sees them.
      for (const animation of document.getAnimations()) {
        if (!animationStarts.has(animation)) animationStarts.set(animation, 0);
      }
    },
    async seek(ms) {
      clock.setTime(ms);
      await Promise.all([...workers].map((worker) => worker.setTime(ms)));
      clock.runFrameCallbacks();
      const draws = seekHandlers.map((fn) => fn(ms / 1000)).filter((r) => r instanceof Promise);
      this.waitingOnSeek = draws.length > 0;
      await Promise.all(draws);
      this.waitingOnSeek = false;
      for (const hook of this.hooks.seek) hook(ms / 1000);
      for (const animation of document.getAnimations()) {
        if (!animationStarts.has(animation)) animationStarts.set(animation, ms);
        animation.pause();
        animation.currentTime = Math.max(0, ms - animationStarts.get(animation));
      }
      const seeks = [];
      for (const media of document.querySelectorAll("video, audio")) {
        if (media.__ffSrc) continue; // drawn by the agent
        media.pause();
        const t = this.mediaTime(media, ms / 1000);
        if (t !== null && Math.abs(media.currentTime - t) > 0.0005) {
          seeks.push(new Promise((resolve) => media.addEventListener("seeked", resolve, { once: true })));
          media.currentTime = t;
        }
      }
      await Promise.all(seeks);
      await Promise.all(childFrames().map(({ runtime }) => runtime.seek(ms)));
    },
  };
})();
