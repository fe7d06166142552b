/* clipjobs status pages. Plain JS, no build step, no CDN.
 * The bearer token comes from the URL fragment (#token=...) and is kept in
 * sessionStorage; it never goes into a URL the server sees.
 * Live updates: Server-Sent Events read with fetch() (EventSource cannot send
 * an Authorization header), falling back to polling GET every 3 s.
 */
(function () {
  "use strict";

  var TEXTS = {
    ru: {
      title: "Music Clips", channel: "Канал", token: "Токен доступа", run: "Запустить Music Clips",
      hint: "Страница покажет стадию, таймер и taskId сразу после запуска.",
      jobTitle: "Генерация Music Clips", jobId: "jobId", taskId: "sunoTaskId", copy: "Копировать",
      copied: "Скопировано", details: "Показать детали", hideDetails: "Скрыть детали",
      when: "Время", event: "Событие", data: "Данные", again: "Запустить ещё",
      running: "идёт", took: "заняло", live: "в реальном времени", polling: "обновление каждые 3 с",
      stale: "Нет вестей от задачи уже {s} с. Возможно, Suno не прислал ответ — мы продолжаем проверять статус.",
      noToken: "Нужен токен доступа: откройте ссылку, которую напечатал clipjobs serve.",
      starting: "Запускаем…", failedStart: "Не удалось запустить", notFound: "Задача не найдена"
    },
    en: {
      title: "Music Clips", channel: "Channel", token: "Access token", run: "Run Music Clips",
      hint: "The page shows the stage, a timer and the task id right after the start.",
      jobTitle: "Music Clips generation", jobId: "jobId", taskId: "sunoTaskId", copy: "Copy",
      copied: "Copied", details: "Show details", hideDetails: "Hide details",
      when: "Time", event: "Event", data: "Data", again: "Run again",
      running: "running", took: "took", live: "live", polling: "refreshing every 3 s",
      stale: "No news from this job for {s} s. Suno may not have answered; we keep checking.",
      noToken: "An access token is needed: open the link clipjobs serve printed.",
      starting: "Starting…", failedStart: "Could not start", notFound: "Job not found"
    }
  };
  var lang = /^en/i.test(navigator.language || "") ? "en" : "ru";
  function t(key) { return TEXTS[lang][key] || TEXTS.ru[key] || key; }
  function $(id) { return document.getElementById(id); }

  function applyTexts() {
    document.documentElement.lang = lang;
    var nodes = document.querySelectorAll("[data-t]");
    for (var i = 0; i < nodes.length; i++) {
      var text = TEXTS[lang][nodes[i].getAttribute("data-t")];
      if (text) nodes[i].textContent = text;
    }
  }

  function token() {
    var match = location.hash.match(/(?:^#|&)token=([^&]+)/);
    if (match) {
      sessionStorage.setItem("clipjobs.token", decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem("clipjobs.token") || "";
  }

  function headers(extra) {
    var h = { "Accept-Language": lang, "Accept": "application/json" };
    var tok = token();
    if (tok) h.Authorization = "Bearer " + tok;
    for (var k in extra || {}) h[k] = extra[k];
    return h;
  }

  function mmss(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var s = seconds % 60;
    return Math.floor(seconds / 60) + ":" + (s < 10 ? "0" : "") + s;
  }

  // --- the start page ---------------------------------------------------------

  function startPage() {
    applyTexts();
    if (!token()) $("token-row").classList.remove("hidden");
    $("run-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var typed = $("token").value.trim();
      if (typed) sessionStorage.setItem("clipjobs.token", typed);
      var channel = $("channel").value.trim();
      var button = $("run");
      var error = $("run-error");
      error.classList.add("hidden");
      button.disabled = true;
      button.textContent = t("starting");
      fetch("/api/music-clips/channels/" + encodeURIComponent(channel) + "/runOnce", {
        method: "POST", headers: headers({ "Content-Type": "application/json" }), body: "{}"
      }).then(function (res) {
        return res.json().then(function (body) { return { status: res.status, body: body }; });
      }).then(function (r) {
        var jobId = r.body.jobId;
        if (jobId && (r.status === 202 || r.status === 409 || r.status === 400 || r.status === 402)) {
          location.href = "/music-clips/jobs/" + encodeURIComponent(jobId);
          return;
        }
        if (r.status === 401) $("token-row").classList.remove("hidden");
        throw new Error((r.body.error || r.status) + ": " + (r.body.message || ""));
      }).catch(function (err) {
        error.textContent = t("failedStart") + " — " + err.message;
        error.classList.remove("hidden");
        button.disabled = false;
        button.textContent = t("run");
      });
    });
  }

  // --- the job page -----------------------------------------------------------

  var PERCENT = { 10: 8, 20: 18, 30: 30, 40: 55, 50: 100, 60: 85, 70: 100, 90: 100, 99: 100 };

  function jobPage() {
    applyTexts();
    var jobId = decodeURIComponent(location.pathname.split("/").pop());
    var state = { body: null, receivedAt: 0, mode: "sse", history: null, detailsOpen: false };
    window.ClipJobs.state = state;
    $("job-id").textContent = jobId;
    if (!token()) { showError(t("noToken")); return; }

    function showError(text) {
      var el = $("error");
      el.textContent = text;
      el.classList.remove("hidden");
    }

    function render(body) {
      var previous = state.body;
      state.body = body;
      state.receivedAt = Date.now();
      var number = parseInt(String(body.stage).slice(6, 8), 10);
      $("stage").textContent = body.stage;
      $("progress-text").textContent = body.progressText;
      $("bar").style.width = (PERCENT[number] || 0) + "%";
      $("task-id").textContent = body.sunoTaskId || "—";
      var card = $("job");
      card.classList.toggle("done-ok", body.done && (number === 50 || number === 70));
      card.classList.toggle("done-bad", body.done && (number === 90 || number === 99));
      if (body.error) showError(body.error + (body.errorCode ? " [" + body.errorCode + "]" : ""));
      if (body.audioUrl) {
        $("result").classList.remove("hidden");
        if ($("audio").getAttribute("src") !== body.audioUrl) $("audio").setAttribute("src", body.audioUrl);
      }
      if (body.clipUrl) {
        $("clip").classList.remove("hidden");
        if ($("clip").getAttribute("src") !== body.clipUrl) $("clip").setAttribute("src", body.clipUrl);
      }
      tick();
      if (state.detailsOpen && (!previous || previous.version !== body.version)) loadHistory();
    }

    function serverSeconds() {
      // Seconds since the last event, extrapolated from the last answer.
      var b = state.body;
      return b.heartbeat.secondsSinceUpdate + (Date.now() - state.receivedAt) / 1000;
    }

    function tick() {
      var b = state.body;
      if (!b) return;
      var created = Date.parse(b.createdAt);
      var updated = Date.parse(b.updatedAt);
      var now = updated + serverSeconds() * 1000; // the server's "now", immune to local clock skew
      $("timer").textContent = (b.done ? t("took") + " " + mmss((updated - created) / 1000)
                                       : t("running") + " " + mmss((now - created) / 1000));
      var stale = !b.done && b.heartbeat.isStale;
      $("stale").textContent = t("stale").replace("{s}", Math.floor(serverSeconds()));
      $("stale").classList.toggle("hidden", !stale);
    }

    function fetchJob() {
      return fetch("/api/music-clips/jobs/" + encodeURIComponent(jobId), { headers: headers() })
        .then(function (res) {
          return res.json().then(function (body) {
            if (res.status !== 200) throw new Error(body.error === "JOB_NOT_FOUND" ? t("notFound") : (body.error || res.status));
            return body;
          });
        });
    }

    function poll() {
      state.mode = "poll";
      $("live-mode").textContent = t("polling");
      fetchJob().then(function (body) {
        render(body);
        if (!body.done) setTimeout(poll, 3000);
      }).catch(function (err) { showError(err.message); setTimeout(poll, 3000); });
    }

    function sse(lastId, failures) {
      state.mode = "sse";
      $("live-mode").textContent = t("live");
      var extra = { "Accept": "text/event-stream" };
      if (lastId) extra["Last-Event-ID"] = lastId;
      fetch("/api/music-clips/jobs/" + encodeURIComponent(jobId) + "/events", { headers: headers(extra) })
        .then(function (res) {
          if (res.status !== 200 || !res.body || !window.TextDecoderStream) throw new Error("no stream");
          var reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          var buffer = "";
          function pump() {
            return reader.read().then(function (chunk) {
              if (chunk.done) return;
              buffer += chunk.value.replace(/\r\n/g, "\n");
              var cut;
              while ((cut = buffer.indexOf("\n\n")) >= 0) {
                var block = buffer.slice(0, cut);
                buffer = buffer.slice(cut + 2);
                var data = [];
                block.split("\n").forEach(function (line) {
                  if (line.indexOf("id:") === 0) lastId = line.slice(3).trim();
                  else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
                });
                if (data.length) render(JSON.parse(data.join("\n")));
              }
              return pump();
            });
          }
          return pump();
        })
        .then(function () {
          if (!(state.body && state.body.done)) setTimeout(function () { sse(lastId, 0); }, 1000);
        })
        .catch(function () {
          if (state.body && state.body.done) return;
          if (failures >= 1) poll(); else setTimeout(function () { sse(lastId, failures + 1); }, 1000);
        });
    }

    function loadHistory() {
      fetch("/api/music-clips/jobs/" + encodeURIComponent(jobId) + "/history", { headers: headers() })
        .then(function (res) { return res.json(); })
        .then(function (body) {
          var rows = (body.events || []).map(function (e) {
            var tr = document.createElement("tr");
            [String(e.version), e.at, e.type, JSON.stringify(e.data)].forEach(function (text, i) {
              var td = document.createElement("td");
              td.textContent = text;
              if (i === 3) td.className = "data";
              tr.appendChild(td);
            });
            return tr;
          });
          var tbody = $("history");
          tbody.textContent = "";
          rows.forEach(function (tr) { tbody.appendChild(tr); });
          state.history = body.events || [];
        });
    }

    $("details-toggle").addEventListener("click", function () {
      state.detailsOpen = !state.detailsOpen;
      $("details").classList.toggle("hidden", !state.detailsOpen);
      $("details-toggle").textContent = state.detailsOpen ? t("hideDetails") : t("details");
      if (state.detailsOpen) loadHistory();
    });

    var copyButtons = document.querySelectorAll("[data-copy]");
    for (var i = 0; i < copyButtons.length; i++) {
      copyButtons[i].addEventListener("click", function (ev) {
        var button = ev.currentTarget;
        var text = $(button.getAttribute("data-copy")).textContent;
        var done = function () {
          button.textContent = t("copied");
          setTimeout(function () { button.textContent = t("copy"); }, 1500);
        };
        if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done);
        else {
          var area = document.createElement("textarea");
          area.value = text;
          document.body.appendChild(area);
          area.select();
          document.execCommand("copy");
          area.remove();
          done();
        }
      });
    }

    setInterval(tick, 1000);
    // The heartbeat is about silence, which SSE cannot report: refresh it now and then.
    setInterval(function () {
      if (state.body && !state.body.done && state.mode === "sse") fetchJob().then(render, function () {});
    }, 5000);
    fetchJob().then(function (body) {
      render(body);
      if (!body.done) sse(String(body.version), 0);
    }).catch(function (err) { showError(err.message); });
  }

  window.ClipJobs = { startPage: startPage, jobPage: jobPage, state: null };
})();
