// Live refresh: when the "live" box is ticked (remembered per browser), the
// page's main part is fetched again every few seconds (the body's
// data-refresh-ms) and swapped in.
(function () {
  var box = document.getElementById("live");
  if (!box) return;
  box.checked = localStorage.getItem("esync-live") === "1";
  box.addEventListener("change", function () {
    localStorage.setItem("esync-live", box.checked ? "1" : "0");
  });
  setInterval(function () {
    if (!box.checked || document.hidden) return;
    fetch(location.href, { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (!html) return;
      var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
      if (fresh) document.getElementById("main").replaceWith(fresh);
    }).catch(function () {});
  }, Number(document.body.dataset.refreshMs) || 5000);
})();
