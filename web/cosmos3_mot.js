// Cosmos3 MoT frontend extension: shows the warnings the nodes send (event "cosmos3_mot.warning", see
// nodes/_comfy.py warn_user) as warning toasts. Works with the 1.27 frontend bundled with ComfyUI 0.3.64 and
// the 1.5x frontends (app.extensionManager.toast); older frontends fall back to the console.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EVENT = "cosmos3_mot.warning";

app.registerExtension({
  name: "Cosmos3MoT.Warnings",
  setup() {
    api.addEventListener(EVENT, (event) => {
      const { title, text, node } = event.detail || {};
      const summary = (title || "Cosmos3 MoT") + (node ? ` (node #${node})` : "");
      const toast = app.extensionManager && app.extensionManager.toast;
      if (toast && typeof toast.add === "function") {
        toast.add({ severity: "warn", summary, detail: text || "", life: 30000 });
      } else {
        console.warn(`${summary}: ${text}`);
      }
    });
  },
});
