// The dashboard's only script. Pages work without it; it adds two conveniences:
// a box that ticks every job on the page, and refreshing the page's main part every few
// seconds (paused while the tab is hidden or while you are ticking jobs or filling a form).
"use strict";

document.addEventListener("change", (event) => {
  const box = event.target;
  if (box instanceof HTMLInputElement && box.matches("input[data-select-all]")) {
    for (const row of document.querySelectorAll("input[name=id][form=bulk]")) {
      row.checked = box.checked;
    }
  }
});

(() => {
  const seconds = Number(document.body.dataset.refresh || 0);
  if (!(seconds > 0)) {
    return;
  }
  let busy = false;

  function userIsBusy() {
    const main = document.querySelector("main");
    if (main === null) {
      return true;
    }
    const focused = document.activeElement;
    if (focused !== null && focused !== document.body && main.contains(focused) && focused.closest("form")) {
      return true;
    }
    return main.querySelector("input[type=checkbox]:checked, input[type=radio][value=filter]:checked") !== null;
  }

  async function refresh() {
    if (busy || document.hidden || userIsBusy()) {
      return;
    }
    busy = true;
    try {
      const response = await fetch(window.location.href, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
      if (!response.ok) {
        return;
      }
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.querySelector("main");
      const current = document.querySelector("main");
      if (fresh !== null && current !== null && !userIsBusy()) {
        current.replaceWith(document.adoptNode(fresh));
        document.dispatchEvent(new CustomEvent("dashboard:refreshed"));
      }
    } catch (error) {
      // The next tick tries again (the server may be restarting).
    } finally {
      busy = false;
    }
  }

  window.setInterval(refresh, seconds * 1000);
})();
