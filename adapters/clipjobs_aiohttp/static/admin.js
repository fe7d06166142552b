/* clipjobs fleet page (/music-clips/admin): every job the token may see, live.
 *
 * Filters live in the query string (a view can be shared); the token comes from
 * #token=... as on the job page and stays in sessionStorage. The table is
 * filled from GET /api/music-clips/jobs and kept current by the fleet SSE
 * stream (read with fetch: EventSource cannot send an Authorization header);
 * ages and stale marks move every second on the page's own clock. The helpers
 * every page shares come from clipjobs.js (window.ClipJobs), loaded first.
 */
(function () {
  "use strict";

  var TEXTS = {
    ru: {
      title: "Все задачи", stages: "Этапы", channel: "Канал", user: "Пользователь",
      done: "Завершённые", any: "все", notDone: "только идущие", onlyDone: "только завершённые",
      stale: "Только зависшие", bulkCancel: "Отменить подходящие…", stage: "Этап", age: "Возраст",
      heartbeat: "Пульс", errorCol: "Ошибка", empty: "Подходящих задач нет",
      active: "идут", staleCount: "зависли", waiting: "ждут Suno",
      matched: "Подходит задач: {n}{more}. Отменить их?", moreThan: " (за раз — не больше 1000)",
      nothing: "Нет задач, которые можно отменить.", cancelled: "Отменено: {n}{more}",
      moreLeft: "; подходят ещё — нажмите снова", staleMark: "завис",
      live: "обновляется в реальном времени", reconnecting: "переподключаемся…",
      noToken: "Нужен токен: откройте страницу со ссылкой #token=…",
      unauthorized: "Токен не подошёл.", failed: "Ошибка"
    },
    en: {
      title: "All jobs", stages: "Stages", channel: "Channel", user: "User",
      done: "Finished", any: "all", notDone: "running only", onlyDone: "finished only",
      stale: "Stale only", bulkCancel: "Cancel matching…", stage: "Stage", age: "Age",
      heartbeat: "Heartbeat", errorCol: "Error", empty: "No jobs match",
      active: "running", staleCount: "stale", waiting: "waiting for Suno",
      matched: "{n} jobs match{more}. Cancel them?", moreThan: " (at most 1000 at a time)",
      nothing: "No job to cancel.", cancelled: "Cancelled: {n}{more}",
      moreLeft: "; more match — press again", staleMark: "stale",
      live: "updating live", reconnecting: "reconnecting…",
      noToken: "A token is needed: open the page with its #token=… link.",
      unauthorized: "The token was refused.", failed: "Error"
    }
  };
  // The server's stages, in its order (from /stats): the page knows no stage list of its own.
  var STAGES = [];
  var LIST_LIMIT = 200;

  var shared = window.ClipJobs;
  var lang = shared.lang, $ = shared.$, show = shared.show, root = shared.root, api = shared.api;
  var token = shared.token, headers = shared.headers;
  var t = shared.texts(TEXTS);

  var rows = {};       // jobId -> {job, received (ms), tr}
  var staleAfter = 60; // seconds, from /stats
  var controller = null;

  // --- filters <-> URL -----------------------------------------------------------

  function filtersFromUrl() {
    var q = new URLSearchParams(location.search);
    return {
      stage: q.getAll("stage"),
      channelId: q.get("channelId") || "", userId: q.get("userId") || "",
      done: q.get("done") === "true" || q.get("done") === "false" ? q.get("done") : "",
      stale: q.get("stale") === "true"
    };
  }
  function query(f, forStream) {
    var q = new URLSearchParams();
    f.stage.forEach(function (s) { q.append("stage", s); });
    if (f.channelId) q.set("channelId", f.channelId);
    if (f.userId) q.set("userId", f.userId);
    if (f.done) q.set("done", f.done);
    if (f.stale && !forStream) q.set("stale", "true");
    return q.toString();
  }
  var filters = filtersFromUrl();

  function buildStages() {
    var box = $("stages");
    STAGES.forEach(function (s) {
      var label = document.createElement("label");
      label.className = "inline";
      var input = document.createElement("input");
      input.type = "checkbox"; input.value = s; input.name = "stage";
      input.checked = filters.stage.indexOf(s) >= 0;
      label.appendChild(input);
      label.appendChild(document.createTextNode(" " + s.slice(6)));
      box.appendChild(label);
    });
  }
  function buildForm() {
    $("f-channel").value = filters.channelId;
    $("f-user").value = filters.userId;
    $("f-done").value = filters.done;
    $("f-stale").checked = filters.stale;
    $("filters").addEventListener("change", applyForm);
    $("filters").addEventListener("submit", function (ev) { ev.preventDefault(); applyForm(); });
  }
  function applyForm() {
    var checked = document.querySelectorAll("#stages input:checked");
    filters = {
      stage: Array.prototype.map.call(checked, function (i) { return i.value; }),
      channelId: $("f-channel").value.trim(), userId: $("f-user").value.trim(),
      done: $("f-done").value, stale: $("f-stale").checked
    };
    var q = query(filters, false);
    history.replaceState(null, "", location.pathname + (q ? "?" + q : ""));
    reload();
  }

  // --- fetching ------------------------------------------------------------------

  function getJson(path, init) {
    return shared.answer(fetch(api(path), init || { headers: headers(), cache: "no-store" }));
  }
  function showError(r) {
    var text = r.status === 401 ? t("unauthorized") : t("failed") + ": " + ((r.body && r.body.message) || r.status);
    $("error").textContent = text;
    show($("error"), true);
  }
  function loadStats() {
    var q = query(filters, false);
    return getJson("stats" + (q ? "?" + q : "")).then(function (r) {
      if (r.status !== 200) return showError(r);
      staleAfter = r.body.staleAfterSeconds || staleAfter;
      if (!STAGES.length) { STAGES = Object.keys(r.body.byStage); buildStages(); }
      var box = $("counts");
      box.textContent = "";
      function chip(label, n, id) {
        var span = document.createElement("span");
        span.className = "count";
        if (id) span.id = id;
        var b = document.createElement("b");
        b.textContent = String(n);
        span.appendChild(document.createTextNode(label + " "));
        span.appendChild(b);
        box.appendChild(span);
      }
      STAGES.forEach(function (s) {
        var n = r.body.byStage[s];
        if (n) chip(s.slice(6), n, "count-" + s);
      });
      chip(t("active"), r.body.active, "count-active");
      chip(t("staleCount"), r.body.stale, "count-stale");
      chip(t("waiting"), r.body.usersWaiting, "count-waiting");
    });
  }
  var statsTimer = null;
  function statsSoon() {
    if (statsTimer) return;
    statsTimer = setTimeout(function () { statsTimer = null; loadStats(); }, 500);
  }
  function loadList() {
    var q = query(filters, false);
    return getJson("jobs?limit=" + LIST_LIMIT + (q ? "&" + q : "")).then(function (r) {
      if (r.status !== 200) return showError(r);
      show($("error"), false);
      rows = {};
      $("jobs").textContent = "";
      r.body.jobs.forEach(function (job) { upsert(job, false); });
      show($("empty"), r.body.jobs.length === 0);
    });
  }

  // --- the table -----------------------------------------------------------------

  function ago(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 120) return seconds + (lang === "ru" ? " с" : " s");
    if (seconds < 7200) return Math.floor(seconds / 60) + (lang === "ru" ? " мин" : " min");
    if (seconds < 172800) return Math.floor(seconds / 3600) + (lang === "ru" ? " ч" : " h");
    return Math.floor(seconds / 86400) + (lang === "ru" ? " д" : " d");
  }
  function cell(tr, cls, text) {
    var td = document.createElement("td");
    td.className = cls;
    if (text !== undefined) td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  function upsert(job, top) {
    var known = rows[job.jobId];
    if (known && known.job.version > job.version) return;
    var tr = known ? known.tr : document.createElement("tr");
    tr.textContent = "";
    tr.setAttribute("data-job-id", job.jobId);
    var stageTd = cell(tr, "stage");
    var link = document.createElement("a");
    link.href = root + "music-clips/jobs/" + encodeURIComponent(job.jobId);
    link.textContent = job.stage;
    link.title = job.jobId;
    stageTd.appendChild(link);
    cell(tr, "num age");
    cell(tr, "num beat");
    cell(tr, "channel", job.channelId);
    cell(tr, "user", job.userId || "");
    cell(tr, "err", job.error || job.errorCode || "");
    tr.classList.toggle("done-bad", job.done && !!job.errorCode);
    rows[job.jobId] = { job: job, received: Date.now(), tr: tr };
    if (!known) {
      if (top) $("jobs").insertBefore(tr, $("jobs").firstChild); else $("jobs").appendChild(tr);
      show($("empty"), false);
    }
    tick1(rows[job.jobId]);
  }
  function tick1(row) {
    var job = row.job, since = (Date.now() - row.received) / 1000;
    var created = Date.parse(job.createdAt);
    row.tr.querySelector(".age").textContent = ago((Date.now() - created) / 1000);
    var quiet = job.heartbeat.secondsSinceUpdate + since;
    var stale = !job.done && (job.heartbeat.isStale || quiet > staleAfter);
    row.tr.classList.toggle("stale", stale);
    row.tr.querySelector(".beat").textContent = ago(quiet) + (stale ? " · " + t("staleMark") : "");
  }
  function tick() { for (var id in rows) tick1(rows[id]); }

  function matches(job) {
    if (filters.stage.length && filters.stage.indexOf(job.stage) < 0) return false;
    if (filters.done && String(job.done) !== filters.done) return false;
    return true; // channel and user are applied by the server's stream
  }

  // --- the live feed ---------------------------------------------------------------

  function handle(block) {
    var kind = "message", data = "";
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event: ") === 0) kind = line.slice(7);
      else if (line.indexOf("data: ") === 0) data += line.slice(6);
    });
    if (kind === "resync") { reload(); return; }
    if (kind !== "job" || !data) return;
    var job = JSON.parse(data);
    if (!matches(job)) {
      var gone = rows[job.jobId];
      if (gone) { gone.tr.remove(); delete rows[job.jobId]; }
    } else if (!filters.stale || rows[job.jobId]) {
      upsert(job, true);
    }
    statsSoon();
  }
  function stream() {
    if (controller) controller.abort();
    controller = new AbortController();
    var mine = controller;
    var q = query(filters, true);
    var streamHeaders = headers({ "Accept": "text/event-stream" });
    fetch(api("events" + (q ? "?" + q : "")), { headers: streamHeaders, signal: mine.signal, cache: "no-store" })
      .then(function (res) {
        if (res.status !== 200 || !res.body) throw new Error("status " + res.status);
        $("live-mode").textContent = t("live");
        document.body.setAttribute("data-live", "1");
        return shared.readBlocks(res, handle);
      })
      .then(function () { if (mine === controller) retry(); }, function () { if (mine === controller && !mine.signal.aborted) retry(); });
  }
  function retry() {
    document.body.removeAttribute("data-live");
    $("live-mode").textContent = t("reconnecting");
    setTimeout(function () { reload(); }, 2000);
  }
  function reload() {
    // The stream first, so nothing that changes while the list loads is missed.
    stream();
    loadStats();
    loadList();
  }

  // --- bulk cancel -------------------------------------------------------------------

  function bulkBody(dryRun) {
    var body = { dryRun: dryRun };
    if (filters.stage.length) body.stage = filters.stage;
    if (filters.channelId) body.channelId = filters.channelId;
    if (filters.userId) body.userId = filters.userId;
    if (filters.done) body.done = filters.done === "true";
    if (filters.stale) body.stale = true;
    return body;
  }
  function post(body) {
    return getJson("jobs/cancel", {
      method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body)
    });
  }
  function bulkCancel() {
    var result = $("bulk-result");
    var body = bulkBody(true);
    if (Object.keys(body).length === 1) body.done = false; // "everything running", said out loud
    post(body).then(function (r) {
      if (r.status !== 200) { result.textContent = t("failed") + ": " + (r.body.message || r.status); return; }
      result.textContent = t("matched", { n: r.body.matched, more: r.body.more ? t("moreThan") : "" });
      result.setAttribute("data-matched", String(r.body.matched));
      if (r.body.matched === 0) { result.textContent = t("nothing"); return; }
      if (!window.confirm(result.textContent)) return;
      body.dryRun = false;
      post(body).then(function (done) {
        if (done.status !== 200) { result.textContent = t("failed") + ": " + (done.body.message || done.status); return; }
        result.textContent = t("cancelled", { n: done.body.cancelled, more: done.body.more ? t("moreLeft") : "" });
      });
    });
  }

  shared.applyTexts(t);
  buildForm();
  $("bulk-cancel").addEventListener("click", bulkCancel);
  if (!token()) {
    $("error").textContent = t("noToken");
    show($("error"), true);
    return;
  }
  reload();
  setInterval(tick, 1000);
  // Going stale is not an event: the counts look again now and then.
  setInterval(loadStats, 10000);
})();
