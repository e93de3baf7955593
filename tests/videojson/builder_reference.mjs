// The reference side of tests/test_videoflow_builder.py: builds each scenario with the real
// @videoflow/core (from framefleet/agent/videoflow/node_modules, installed by `make setup`) and prints
// {scenario: compiled VideoJSON}. The Python side builds the same calls with
// framefleet.videoflow; the two documents must be equal, layer ids aside.
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const root = process.argv[2];
const { VideoFlow } = await import(
  pathToFileURL(join(root, "node_modules/@videoflow/core/dist/index.js")).href
);

const IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC";

const scenarios = {
  basics() {
    const $ = new VideoFlow({ name: "Basics", width: 640, height: 360, fps: 30, backgroundColor: "#101010" });
    const title = $.addText({ text: "Hello {{name}}", fontSize: 6, color: "#ffffff" }, { sourceDuration: "3s" });
    title.fadeIn("1s");
    title.animate({ position: [0.2, 0.3] }, { position: [0.8, 0.3] }, { duration: "1.5s", easing: "easeOut" });
    $.wait("500ms");
    title.set({ color: "#ff0000" });
    title.fadeOut("15f", "linear");
    return $;
  },
  layers() {
    const $ = new VideoFlow({ width: 320, height: 240, fps: 25 });
    $.addImage({ fit: "cover", opacity: 0.8 }, { source: IMAGE, sourceDuration: 2, startTime: "00:01" });
    const box = $.addShape({ width: 20, height: 10, fill: "#00ff00", cornerRadius: 2 },
      { shapeType: "ellipse", transitionIn: { transition: "fade", duration: "400ms" }, transitionOut: { transition: "slideUp", params: { distance: 0.1 } } },
      { waitFor: "1s", index: 2 });
    box.animate({}, { scale: 1.5, rotation: 45 }, { duration: 0.5, wait: false });
    const star = $.addShape({ fill: "#ffff00", sides: 5, effects: [{ effect: "vignette", params: { strength: 0.5 } }] }, { shapeType: "star", speed: 2, sourceDuration: "4s" }, { index: -1 });
    star.animate({ "effects.vignette.strength": 0.1 }, { "effects.vignette.strength": 0.9 }, { duration: "1s" });
    star.hide();
    $.wait(1);
    star.show();
    box.remove({ in: "250ms" });
    $.addCaptions({ fontSize: 3 }, { captions: [{ caption: "One", startTime: 0, endTime: 1 }], sourceDuration: "1s" });
    return $;
  },
  groups() {
    const $ = new VideoFlow({ name: "Groups", width: 640, height: 360, fps: 30 });
    $.addText({ text: "Before" }, { sourceDuration: "1s" }, { waitFor: "finish" });
    const card = $.group({ position: [0.5, 0.6], scale: 1 },
      { transitionIn: { transition: "zoom", duration: "600ms", easing: "easeOut" }, transitionOut: { transition: "fade" } },
      () => {
        $.addShape({ width: 30, height: 30, fill: "#0e1524" }, { sourceDuration: "2s" });
        $.wait("0.5s");
        const label = $.addText({ text: "A rather long label that is truncated in its name", fontSize: 2 }, { sourceDuration: "1s" });
        label.fadeIn("200ms");
        $.group({}, { name: "inner" }, () => {
          $.addText({ text: 42 }, { sourceDuration: "0.5s" });
        });
      });
    card.animate({ scale: 1 }, { scale: 1.1 }, { duration: "500ms" });
    $.addText({ text: "After" }, { sourceDuration: "1s" });
    $.group({ opacity: 0.5 }, { startTime: 5, sourceDuration: "1s" }, () => {
      $.addShape({ fill: "#ffffff" }, {});
    }, { waitFor: "0.25s" });
    return $;
  },
  parallel() {
    const $ = new VideoFlow({ width: 320, height: 180, fps: 60, defaults: { easing: "linear" } });
    const a = $.addText({ text: "A" }, { sourceDuration: "5s" });
    const b = $.addShape({ fill: "#ff0000" }, { sourceDuration: "5s" });
    $.parallel([
      () => { a.fadeIn("1s"); a.animate({ scale: 1 }, { scale: 2 }, { duration: "2s" }); },
      () => { $.addText({ text: "C" }, { sourceDuration: "1s" }); $.addText({ text: "E" }); $.wait("500ms"); b.fadeOut("3s"); },
      () => { $.addShape({ fill: "#0000ff" }); $.addText({ text: "D" }, { sourceDuration: 1 }); },
    ]);
    a.set({ text: "A2" });
    $.wait("10f");
    return $;
  },
};

const out = {};
for (const [name, build] of Object.entries(scenarios)) out[name] = await build().compile();
console.log(JSON.stringify(out));
