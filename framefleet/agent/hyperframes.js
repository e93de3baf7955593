// framefleet's HyperFrames runtime, injected after timecontrol.js and before any page script.
// It gives HyperFrames compositions what they expect from the HyperFrames runtime:
// window.__hyperframes.getVariables(), nested compositions (data-composition-src), clip timing
// and visibility (data-start, data-duration), media timing (data-media-start, data-volume), and
// the GSAP timelines registered on window.__timelines driven to t on every frame. It refuses
// what nothing here can drive, so a page never renders frozen without saying so.
(() => {
  const ff = window.__framefleet;
  const fail = ff.fail;
  // HyperFrames' runtime creates the registry before any page script: a page may assign to
  // window.__timelines["id"] without creating it.
  if (!window.__timelines) window.__timelines = {};

  // --- variables -------------------------------------------------------------------------
  const declaredDefaults = (el) => {
    const raw = el && el.getAttribute("data-composition-variables");
    if (!raw) return {};
    let list;
    try { list = JSON.parse(raw); } catch (e) {
      throw fail("TEMPLATE_SCRIPT_ERROR", `data-composition-variables is not JSON: ${e.message}`);
    }
    const defaults = {};
    for (const v of Array.isArray(list) ? list : []) {
      if (v && typeof v.id === "string" && "default" in v) defaults[v.id] = v.default;
    }
    return defaults;
  };
  const insideNested = (el) => !!(el.parentElement && el.parentElement.closest("[data-composition-src]"));
  // The top level: <html>'s declared defaults and those of compositions that are not nested,
  // then the job's parameters over them.
  const topVariables = () => {
    const values = declaredDefaults(document.documentElement);
    for (const el of document.querySelectorAll("[data-composition-variables]")) {
      if (!insideNested(el)) Object.assign(values, declaredDefaults(el));
    }
    return { ...values, ...window.framefleet.params };
  };
  let scoped = null; // a nested composition's variables while its scripts run
  const hyperframes = Object.freeze({
    getVariables() { return { ...(scoped ?? topVariables()) }; },
  });
  // Read-only, but assigning to them (a page setting its own defaults) is not an error.
  const ignore = () => {};
  Object.defineProperty(window, "__hyperframes", { get: () => hyperframes, set: ignore });
  Object.defineProperty(window, "__hfVariables", { get: () => window.framefleet.params, set: ignore });

  const variablesFor = (el) => {
    const host = el.closest("[data-composition-src]");
    return host && host.__ffVariables ? host.__ffVariables : topVariables();
  };
  // data-var-text, data-var-src and CSS custom properties (--id) for scalar values.
  const applyBindings = () => {
    for (const el of document.querySelectorAll("[data-var-text]")) {
      const value = variablesFor(el)[el.getAttribute("data-var-text")];
      if (value !== undefined) el.textContent = String(value);
    }
    for (const el of document.querySelectorAll("[data-var-src]")) {
      const value = variablesFor(el)[el.getAttribute("data-var-src")];
      if (value !== undefined && el.getAttribute("src") !== String(value)) el.setAttribute("src", String(value));
    }
    const scopes = [[document.documentElement, topVariables()]];
    for (const host of document.querySelectorAll("[data-composition-src]")) {
      if (host.__ffVariables) scopes.push([host, host.__ffVariables]);
    }
    for (const [el, values] of scopes) {
      for (const [id, value] of Object.entries(values)) {
        if (["string", "number", "boolean"].includes(typeof value)) el.style.setProperty(`--${id}`, String(value));
      }
    }
  };

  // --- nested compositions -----------------------------------------------------------------
  const runScript = async (original, variables) => {
    const script = document.createElement("script");
    for (const { name, value } of original.attributes) script.setAttribute(name, value);
    if (original.__ffType === null) script.removeAttribute("type");
    else if (original.__ffType !== undefined) script.setAttribute("type", original.__ffType);
    if (original.src) {
      await new Promise((resolve, reject) => {
        script.onload = resolve;
        script.onerror = () => reject(fail("TEMPLATE_LOAD_ERROR", `script ${original.src} could not load`));
        original.replaceWith(script);
      });
      return;
    }
    // Each nested script in a function of its own (top-level names of two instances must not
    // collide), with getVariables() answering for its instance while it runs.
    script.textContent = `(function(){${original.textContent}\n})();`;
    scoped = variables;
    try { original.replaceWith(script); } finally { scoped = null; }
  };

  // --- layout, as HyperFrames' runtime lays a composition out ----------------------------------
  const px = (el, name) => {
    const value = parseInt(el.getAttribute(name), 10);
    return Number.isFinite(value) && value > 0 ? `${value}px` : null;
  };
  // A nested composition's own root (the first element of its file with data-composition-id)
  // takes its declared size, else its host's (100%); the host takes the declared size too, so
  // a host without a size of its own (or without data-composition-id) still fills its frame.
  const sizeNested = (host, content) => {
    const inner = content.querySelector("[data-composition-id]");
    if (!inner) return;
    inner.setAttribute("data-hf-inner-root", "");
    for (const [name, prop] of [["data-width", "width"], ["data-height", "height"]]) {
      const size = px(inner, name);
      inner.style[prop] = size ?? "100%";
      if (size) {
        host.setAttribute(name, inner.getAttribute(name));
        host.style[prop] = size;
      }
    }
  };
  // Its CSS names its root by [data-composition-id="id"], which its host may carry as well:
  // the rule is for the root inside, not the host (HyperFrames scopes it the same way).
  const scopeRootSelectors = (css, content) => {
    const inner = content.querySelector("[data-hf-inner-root]");
    const id = inner && inner.getAttribute("data-composition-id");
    if (!id) return css;
    const attribute = new RegExp(`\\[data-composition-id=(["'])${id.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\1\\]`, "g");
    const own = `[data-composition-id="${id}"]`;
    return css.replace(attribute, `:is(${own}:not(:has([data-hf-inner-root])), ${own} > [data-hf-inner-root])`);
  };
  // The page fills the frame (no body margin or scrollbars); the root takes its declared size
  // and clips; its timed children are placed absolutely, sized from data-width/data-height or
  // to the whole root when they would otherwise have no size.
  const layOut = () => {
    for (const el of [document.documentElement, document.body]) {
      if (!el) continue;
      el.style.margin = "0";
      el.style.padding = "0";
      el.style.overflow = "hidden";
    }
    const root = [...document.querySelectorAll("[data-composition-id]")].find(isRoot);
    if (!root) return;
    if (!root.style.position) root.style.position = "relative";
    root.style.overflow = "hidden";
    for (const [name, prop] of [["data-width", "width"], ["data-height", "height"]]) {
      const size = px(root, name);
      if (size) root.style[prop] = size;
    }
    const skipped = ["SCRIPT", "STYLE", "LINK", "META"];
    for (const child of root.children) {
      if (skipped.includes(child.tagName) || !child.hasAttribute("data-start")) continue;
      const style = getComputedStyle(child);
      if (style.position !== "absolute" && style.position !== "fixed") child.style.position = "absolute";
      if (child.tagName === "AUDIO") continue;
      const media = child.tagName === "IMG" || child.tagName === "VIDEO";
      for (const [name, prop] of [["data-width", "width"], ["data-height", "height"]]) {
        const declared = px(child, name);
        const computed = style[prop];
        if (child.style[prop]) continue;
        if (declared) {
          if (computed === "0px" || computed === "auto") child.style[prop] = declared;
        } else if (!media && computed === "0px") {
          child.style[prop] = "100%";
        }
      }
    }
  };

  const loadNested = async (root) => {
    for (const host of root.querySelectorAll("[data-composition-src]")) {
      if (host.__ffLoaded) continue;
      host.__ffLoaded = true;
      const src = host.getAttribute("data-composition-src");
      let text;
      try {
        const response = await fetch(new URL(src, document.baseURI));
        if (!response.ok) throw new Error(`status ${response.status}`);
        text = await response.text();
      } catch (e) {
        throw fail("TEMPLATE_LOAD_ERROR", `nested composition ${src} could not load (${e.message}); is it inside the project folder?`);
      }
      const doc = new DOMParser().parseFromString(text, "text/html");
      const template = doc.querySelector("template");
      const content = document.importNode(template ? template.content : doc.body, true);
      const declarer = content.querySelector("[data-composition-variables]") || doc.documentElement;
      let values = {};
      try { values = JSON.parse(host.getAttribute("data-variable-values") || "{}"); } catch (e) {
        throw fail("TEMPLATE_SCRIPT_ERROR", `data-variable-values of ${src} is not JSON: ${e.message}`);
      }
      host.__ffVariables = { ...declaredDefaults(declarer), ...values };
      if (!template) {
        for (const style of doc.head.querySelectorAll("style, link[rel=stylesheet]")) host.append(document.importNode(style, true));
      }
      sizeNested(host, content);
      if (!template) {
        for (const style of host.querySelectorAll("style")) style.textContent = scopeRootSelectors(style.textContent, content);
      }
      for (const style of content.querySelectorAll("style")) style.textContent = scopeRootSelectors(style.textContent, content);
      const scripts = [...content.querySelectorAll("script")];
      // A <template>'s scripts would run as they are inserted (and again from runScript, in
      // their own scope): inert until runScript puts a live copy in their place.
      for (const script of scripts) {
        script.__ffType = script.getAttribute("type");
        script.setAttribute("type", "text/x-framefleet-inert");
      }
      host.append(content);
      for (const script of scripts) await runScript(script, host.__ffVariables);
      await loadNested(host);
    }
  };

  // --- clip timing --------------------------------------------------------------------------
  const number = (el, name, fallback) => {
    const value = parseFloat(el.getAttribute(name));
    return Number.isFinite(value) ? value : fallback;
  };
  const compositionOf = (el) => el.parentElement && el.parentElement.closest("[data-composition-id]");
  let clips = null; // element -> {start, end} in seconds of the whole video
  const windowOf = (el, resolving = new Set()) => {
    if (clips.has(el)) return clips.get(el);
    if (resolving.has(el)) throw fail("TEMPLATE_SCRIPT_ERROR", `data-start of #${el.id} refers to itself in a cycle`);
    resolving.add(el);
    const parent = compositionOf(el);
    const outer = parent ? windowOf(parent, resolving) : { start: 0, end: Infinity };
    let start = 0;
    const expression = (el.getAttribute("data-start") || "0").trim();
    const match = expression.match(/^([A-Za-z_][\w-]*)\s*(?:([+-])\s*([\d.]+))?$/);
    if (match) {
      const scope = parent || document;
      const ref = [...scope.querySelectorAll("[data-start]")].find((c) => c.id === match[1] && compositionOf(c) === parent);
      if (!ref) throw fail("TEMPLATE_SCRIPT_ERROR", `data-start="${expression}" of #${el.id} names no clip in its composition`);
      const offset = match[2] ? (match[2] === "+" ? 1 : -1) * parseFloat(match[3]) : 0;
      start = windowOf(ref, resolving).end - outer.start + offset;
    } else {
      start = parseFloat(expression);
      if (!Number.isFinite(start)) throw fail("TEMPLATE_SCRIPT_ERROR", `data-start="${expression}" of #${el.id} is not a time`);
    }
    const duration = number(el, "data-duration", Infinity);
    const absolute = outer.start + start;
    const window_ = { start: absolute, end: Math.min(outer.end, absolute + duration) };
    clips.set(el, window_);
    return window_;
  };
  const isRoot = (el) => !compositionOf(el) && el.hasAttribute("data-composition-id");

  // --- the page's timelines -----------------------------------------------------------------
  const timelines = () => Object.entries(window.__timelines || {});
  const hostOf = (id) => {
    const all = [...document.querySelectorAll(`[data-composition-id="${CSS.escape(id)}"]`)];
    return all.find((el) => el.hasAttribute("data-composition-src")) || all[0] || null;
  };
  // anime.js as HyperFrames drives it: what the page registers on window.__hfAnime (anything
  // with seek(ms)) and the instances anime.js is running, seeked to t in milliseconds.
  const discoverAnime = () => {
    const running = window.anime?.running;
    if (!Array.isArray(running) || running.length === 0) return;
    const registered = Array.isArray(window.__hfAnime) ? window.__hfAnime : [];
    for (const instance of running) if (!registered.includes(instance)) registered.push(instance);
    window.__hfAnime = registered;
  };
  const seekAnime = (t) => {
    const instances = window.__hfAnime;
    if (!Array.isArray(instances)) return;
    for (const instance of instances) if (typeof instance?.seek === "function") instance.seek(Math.max(0, t * 1000));
  };
  // Animation runtimes HyperFrames drives that framefleet does not: a page using one must
  // draw from framefleet.onSeek, or its frames would not follow t.
  const undriven = () => {
    const found = [];
    if (window.lottie?.getRegisteredAnimations?.().length || window.bodymovin?.getRegisteredAnimations?.().length) found.push("lottie-web");
    if (window.THREE) found.push("three.js");
    return found;
  };

  // What HyperFrames' producer renders that framefleet cannot: refused by name at load, never
  // drawn as something else (HyperShader outside HyperFrames' producer shows its own
  // "Preparing scene transitions" overlay instead of the transition).
  const unsupported = () => {
    const found = [];
    if (window.HyperShader || document.querySelector("#__hf-page-side-compositor, [data-hf-loader-core]")) {
      found.push("shader transitions (HyperShader)");
    }
    if (document.querySelector("[data-color-grading]")) found.push("color grading (data-color-grading)");
    return found;
  };

  let isComposition = false;
  ff.hooks.ready.push(async () => {
    const refused = unsupported();
    if (refused.length) {
      throw fail("TEMPLATE_UNSUPPORTED", `the composition uses ${refused.join(" and ")}, which framefleet does not render`);
    }
    isComposition = !!document.querySelector("[data-composition-id]");
    if (!isComposition && timelines().length === 0) return;
    await loadNested(document);
    layOut();
    clips = new Map();
    for (const el of document.querySelectorAll("[data-start]")) windowOf(el);
    applyBindings();
    for (const [id, timeline] of timelines()) {
      if (!timeline || (typeof timeline.totalTime !== "function" && typeof timeline.seek !== "function")) {
        throw fail("TEMPLATE_UNSUPPORTED", `window.__timelines["${id}"] is not a GSAP timeline (no totalTime or seek): nothing can drive it`);
      }
    }
    discoverAnime();
    const runtimes = undriven();
    if (runtimes.length && ff.seekHandlerCount() === 0) {
      throw fail("TEMPLATE_UNSUPPORTED", `the page animates with ${runtimes.join(", ")}, which framefleet does not drive; draw each frame from framefleet.onSeek(t => ...)`);
    }
  });

  // Time inside a nested composition or media element: its offset plus (t - start) * rate,
  // held at the end of its window.
  const localTime = (el, t, offsetNames) => {
    const w = clips.get(el);
    if (!w) return t;
    const offset = offsetNames.map((n) => number(el, n, NaN)).find(Number.isFinite) || 0;
    const rate = number(el, "data-playback-rate", 1);
    return offset + (Math.min(t, w.end) - w.start) * rate;
  };
  const inside = (el, t) => {
    const w = clips.get(el);
    return !w || (t >= w.start && t < w.end);
  };

  ff.hooks.seek.push((t) => {
    if (!clips) return;
    seekAnime(t);
    for (const [id, timeline] of timelines()) {
      const host = hostOf(id);
      const local = host && !isRoot(host) ? Math.max(0, localTime(host, t, ["data-playback-start", "data-media-start"])) : t;
      timeline.pause?.();
      if (typeof timeline.totalTime === "function") {
        // From the last frame's time to this one, as HyperFrames seeks: callbacks the playhead
        // crosses fire (a caption track sets its words in onStart). GSAP skips rendering when
        // the time is unchanged: then nudge, and set.
        if (Math.abs(timeline.totalTime() - local) < 1e-9) timeline.totalTime(local + 0.001, true);
        timeline.totalTime(local, false);
      } else {
        timeline.seek(local, false);
      }
    }
    for (const [el] of clips) {
      if (isRoot(el) || el.tagName === "AUDIO") continue;
      const visible = inside(el, t);
      if (el.__ffVisibility === undefined) el.__ffVisibility = el.style.visibility;
      el.style.visibility = visible ? el.__ffVisibility : "hidden";
    }
  });
  // The composition's length when its root declares no data-duration, as HyperFrames takes
  // it: its root timeline's duration (window.__timelines[root id]), or, when later, the end of
  // its last timed clip (a nested composition or <video>/<audio> with data-start; media without
  // data-duration end with their file, at their rate).
  ff.compositionLength = () => {
    const root = [...document.querySelectorAll("[data-composition-id]")].find(isRoot);
    if (!root) return 0;
    const declared = number(root, "data-duration", NaN);
    if (declared > 0) return declared;
    let length = 0;
    const timeline = (window.__timelines || {})[root.getAttribute("data-composition-id")];
    const own = timeline && typeof timeline.duration === "function" ? Number(timeline.duration()) : NaN;
    if (Number.isFinite(own)) length = own;
    for (const [el, w] of clips ?? []) {
      const media = el.tagName === "VIDEO" || el.tagName === "AUDIO";
      if (!media && !(el.hasAttribute("data-composition-id") && compositionOf(el) === root)) continue;
      let end = w.end;
      if (!Number.isFinite(end) && media && Number.isFinite(el.duration)) {
        const offset = ["data-media-start", "data-playback-start"].map((n) => number(el, n, NaN)).find(Number.isFinite) || 0;
        end = w.start + Math.max(0, el.duration - offset) / number(el, "data-playback-rate", 1);
      }
      if (Number.isFinite(end)) length = Math.max(length, end);
    }
    return length;
  };
  const defaultTiming = ff.clipTiming;
  ff.clipTiming = (media) => {
    const w = clips && clips.get(media);
    if (!w) return defaultTiming(media);
    const offset = ["data-media-start", "data-playback-start"].map((n) => number(media, n, NaN)).find(Number.isFinite) || 0;
    return { start: w.start, end: Number.isFinite(w.end) ? w.end : null, mediaStart: offset };
  };
  const defaultMediaTime = ff.mediaTime;
  ff.mediaTime = (media, t) => {
    if (!clips || !clips.has(media)) return defaultMediaTime(media, t);
    if (!inside(media, t)) return null;
    return localTime(media, t, ["data-media-start", "data-playback-start"]);
  };
})();
