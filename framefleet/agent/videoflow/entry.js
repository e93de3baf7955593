// The bundle's entry: VideoFlow's published browser renderer, as it is on npm, exposed to the
// shell page (shell.html) as a global. Nothing of VideoFlow is rewritten here.
import BrowserRenderer from "@videoflow/renderer-browser";
import { VideoFlow } from "@videoflow/core";

globalThis.VideoFlowRuntime = Object.freeze({
  BrowserRenderer,
  VideoFlow,
  versions: Object.freeze({ core: __CORE_VERSION__, renderer: __RENDERER_VERSION__ }),
});
