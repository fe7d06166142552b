/* clipjobs pages: the start page and a job's status page. Plain JS, no build step, no CDN.
 *
 * The bearer token comes from the URL fragment (#token=...), which browsers never
 * send to a server; it is moved into sessionStorage and removed from the address bar.
 * Every URL is relative to the page (body[data-root]), so the pages work wherever
 * the API is mounted.
 * Live updates: the SSE stream read with fetch() (EventSource cannot send an
 * Authorization header), falling back to polling GET every 3 s.
 *
 * The fleet page (admin.js) loads this script first and takes the helpers every
 * page shares from window.ClipJobs: the language and its texts, the token, the
 * API's URLs and headers, JSON answers and SSE blocks read with fetch().
 */
(function () {
  "use strict";

  var TEXTS = {
    ru: {
      title: "Music Clips", channel: "Канал", token: "Токен доступа", run: "Запустить Music Clips",
      hint: "Страница покажет стадию, таймер и taskId сразу после запуска.",
      jobTitle: "Генерация Music Clips", jobId: "jobId", taskId: "sunoTaskId", copy: "Копировать",
      copied: "Скопировано", copyFailed: "Не удалось скопировать",
      details: "Показать детали", hideDetails: "Скрыть детали",
      when: "Время", event: "Событие", data: "Данные", again: "Запустить ещё",
      running: "идёт", took: "заняло", live: "обновляется в реальном времени",
      polling: "обновление каждые 3 с", finished: "задача завершена",
      stale: "Нет вестей от задачи уже {s}. Возможно, Suno не прислал ответ — мы продолжаем проверять статус.",
      noToken: "Нужен токен доступа: откройте ссылку, которую напечатал clipjobs serve, или введите токен на стартовой странице.",
      unauthorized: "Токен не подошёл: откройте ссылку с токеном ещё раз.",
      starting: "Запускаем…", failedStart: "Не удалось запустить", notFound: "Задача не найдена",
      historyFailed: "Не удалось загрузить историю", errorLabel: "Ошибка",
      cancel: "Отменить", retry: "Повторить", rerender: "Пересобрать клип",
      confirmCancel: "Отменить задачу? Suno больше не будет опрашиваться, клип не будет собран.",
      actionFailed: "Не удалось"
    },
    en: {
      title: "Music Clips", channel: "Channel", token: "Access token", run: "Run Music Clips",
      hint: "The page shows the stage, a timer and the task id right after the start.",
      jobTitle: "Music Clips generation", jobId: "jobId", taskId: "sunoTaskId", copy: "Copy",
      copied: "Copied", copyFailed: "Could not copy",
      details: "Show details", hideDetails: "Hide details",
      when: "Time", event: "Event", data: "Data", again: "Run again",
      running: "running", took: "took", live: "updating live",
      polling: "refreshing every 3 s", finished: "the job has finished",
      stale: "No news from this job for {s}. Suno may not have answered; we keep checking.",
      noToken: "An access token is needed: open the link clipjobs serve printed, or enter the token on the start page.",
      unauthorized: "The token was refused: open the link with the token again.",
      starting: "Starting…", failedStart: "Could not start", notFound: "Job not found",
      historyFailed: "Could not load the history", errorLabel: "Error",
      cancel: "Cancel", retry: "Retry", rerender: "Re-render the clip",
      confirmCancel: "Cancel this job? Suno will not be asked again and no clip will be made.",
      actionFailed: "Could not"
    }
  };
  var POLL_MS = 3000;
  var TOKEN_KEY = "clipjobs.token";

  // --- what every page shares (window.ClipJobs) ------------------------------------

  function pickLanguage() {
    var wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ""];
    for (var i = 0; i < wanted.length; i++) {
      var tag = String(wanted[i]).toLowerCase();
      if (tag.indexOf("ru") === 0) return "ru";
      if (tag.indexOf("en") === 0) return "en";
    }
    return "ru";
  }
  var lang = pickLanguage();
  function texts(table) {
    // A page's t(key, vars): its text in the page's language ({name} replaced by vars.name).
    return function (key, vars) {
      var s = table[lang][key] || table.ru[key] || key;
      for (var k in vars || {}) s = s.replace("{" + k + "}", vars[k]);
      return s;
    };
  }
  var t = texts(TEXTS);
  function $(id) { return document.getElementById(id); }
  function show(el, visible) { el.classList.toggle("hidden", !visible); }
  var root = document.body.getAttribute("data-root") || "";

  function applyTexts(text) {
    // Every [data-t] element gets its text from the page's t.
    document.documentElement.lang = lang;
    var nodes = document.querySelectorAll("[data-t]");
    for (var i = 0; i < nodes.length; i++) nodes[i].textContent = text(nodes[i].getAttribute("data-t"));
  }

  function readToken() {
    // Take the token out of the fragment once, before anything else reads the URL.
    var match = location.hash.match(/(?:^#|&)token=([^&]+)/);
    if (match) {
      try { sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1])); } catch (e) { /* storage off */ }
      history.replaceState(null, "", location.pathname + location.search);
    }
  }
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  function headers(extra) {
    var h = { "Accept-Language": lang, "Accept": "application/json" };
    var tok = token();
    if (tok) h.Authorization = "Bearer " + tok;
    for (var k in extra || {}) h[k] = extra[k];
    return h;
  }

  function api(path) { return root + "api/music-clips/" + path; }

  function answer(fetching) {
    // A fetch() promise as {status, body}; a body that is not JSON is {}.
    return fetching.then(function (res) {
      return res.json().then(function (body) { return { status: res.status, body: body }; },
                             function () { return { status: res.status, body: {} }; });
    });
  }

  function readBlocks(res, onBlock) {
    // Each block ("event: …\ndata: …") of an SSE answer read with fetch(), until it ends.
    var reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buffer += chunk.value.replace(/\r\n?/g, "\n");
        var cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          var block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          onBlock(block);
        }
        return pump();
      });
    }
    return pump();
  }

  readToken();
  window.ClipJobs = {
    state: null, lang: lang, texts: texts, $: $, show: show, root: root, api: api, token: token,
    headers: headers, applyTexts: applyTexts, answer: answer, readBlocks: readBlocks
  };

  function mmss(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var s = seconds % 60;
    return Math.floor(seconds / 60) + ":" + (s < 10 ? "0" : "") + s;
  }

  // --- the start page ---------------------------------------------------------

  function startPage() {
    var channelParam = new URLSearchParams(location.search).get("channel");
    if (channelParam) $("channel").value = channelParam;
    if (!token()) show($("token-row"), true);
    $("run-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var typed = $("token").value.trim();
      if (typed) { try { sessionStorage.setItem(TOKEN_KEY, typed); } catch (e) { /* storage off */ } }
      var channel = $("channel").value.trim();
      var button = $("run");
      var error = $("run-error");
      show(error, false);
      button.disabled = true;
      button.textContent = t("starting");
      answer(fetch(api("channels/" + encodeURIComponent(channel) + "/runOnce"), {
        method: "POST", headers: headers({ "Content-Type": "application/json" }), body: "{}"
      })).then(function (r) {
        // 202 started; 409 one is already running; 400/402 created and failed at once: show it.
        var jobId = r.body.jobId;
        if (jobId && [202, 409, 400, 402].indexOf(r.status) >= 0) {
          location.href = root + "music-clips/jobs/" + encodeURIComponent(jobId);
          return;
        }
        if (r.status === 401) show($("token-row"), true);
        throw new Error((r.body.error || ("HTTP " + r.status)) + (r.body.message ? ": " + r.body.message : ""));
      }).catch(function (err) {
        error.textContent = t("failedStart") + " — " + err.message;
        show(error, true);
        button.disabled = false;
        button.textContent = t("run");
      });
    });
  }

  // --- the job page -----------------------------------------------------------

  // How far along each stage is; a terminal stage is always the full bar.
  var PERCENT = { 10: 8, 20: 18, 30: 30, 40: 55, 50: 75, 60: 85 };

  function jobPage() {
    var jobId = decodeURIComponent(location.pathname.split("/").pop());
    var state = { body: null, receivedAt: 0, mode: "", history: null, detailsOpen: false, stopped: false,
                  elapsed: 0 };
    var timers = [];
    var stream = null;
    window.ClipJobs.state = state;
    $("job-id").textContent = jobId;

    function showError(text) {
      $("error").textContent = text;
      show($("error"), !!text);
    }

    function setMode(mode) {
      state.mode = mode;
      $("live-mode").textContent = t(mode === "sse" ? "live" : mode === "poll" ? "polling" : "finished");
    }

    function stop() {
      // A terminal stage: nothing more will change, so stop every request.
      if (state.stopped) return;
      state.stopped = true;
      setMode("done");
      if (stream) stream.abort();
      timers.forEach(clearInterval);
      timers = [];
      tick();
    }

    function render(body) {
      if (!body || !body.jobId || (state.body && body.version < state.body.version)) return;
      var previous = state.body;
      state.body = body;
      state.receivedAt = Date.now();
      var number = parseInt(String(body.stage).slice(6, 8), 10);
      $("stage").textContent = body.stage;
      $("progress-text").textContent = body.progressText;
      $("bar").style.width = (body.done ? 100 : PERCENT[number] || 0) + "%";
      $("task-id").textContent = body.sunoTaskId || "—";
      $("copy-task-id").disabled = !body.sunoTaskId;
      var card = $("job");
      card.classList.toggle("done-ok", body.done && (number === 50 || number === 70));
      card.classList.toggle("done-bad", body.done && (number === 90 || number === 98 || number === 99));
      show($("cancel"), !body.done);
      show($("retry"), body.retryable === true);
      show($("rerender"), body.canRerender === true);
      var error = body.error ? body.error + (body.errorCode ? " [" + body.errorCode + "]" : "") : "";
      showError(error);
      $("details-error").textContent = error ? t("errorLabel") + ": " + error : "";
      show($("details-error"), !!error);
      if (body.audioUrl) {
        show($("result"), true);
        var track = (body.tracks || [])[0];
        $("track-title").textContent = track && track.title ? track.title : "";
        // This server's kept copy outlives Suno's link; its signature may be renewed
        // in a later body, which is the same file: only another file reloads the player.
        var audioSrc = (track && track.storedAudioUrl) || body.audioUrl;
        var playing = $("audio").getAttribute("src") || "";
        if (playing.split("?")[0] !== audioSrc.split("?")[0]) $("audio").setAttribute("src", audioSrc);
      }
      if (body.clipUrl) {
        show($("result"), true);
        show($("clip"), true);
        if ($("clip").getAttribute("src") !== body.clipUrl) $("clip").setAttribute("src", body.clipUrl);
      }
      if (state.detailsOpen && (!previous || previous.version !== body.version)) loadHistory();
      if (body.done) stop(); else tick();
      awaitKept(body);
    }

    var keptAsks = 0;
    function awaitKept(body) {
      // A finished song is copied to this server just after success: ask a few more
      // times, so the player moves to the kept copy (Suno's link expires in ~15 days).
      var track = (body.tracks || [])[0];
      if (!body.done || !track || !track.audioUrl || track.storedAudioUrl || body.mediaError) return;
      if (keptAsks >= 20) return;
      keptAsks += 1;
      setTimeout(function () { fetchJob().then(render, function () {}); }, keptAsks < 5 ? 500 : POLL_MS);
    }

    function serverSeconds() {
      // Seconds since the last event, extrapolated from the last answer.
      return state.body.heartbeat.secondsSinceUpdate + (Date.now() - state.receivedAt) / 1000;
    }

    function tick() {
      var b = state.body;
      if (!b) return;
      var created = Date.parse(b.createdAt);
      var updated = Date.parse(b.updatedAt);
      if (b.done) {
        $("timer").textContent = t("took") + " " + mmss((updated - created) / 1000);
        show($("stale"), false);
        return;
      }
      // The server's "now": immune to a wrong clock on this device. secondsSinceUpdate
      // is whole seconds, so a fresh answer may put it up to 1 s earlier: never count back.
      var now = updated + serverSeconds() * 1000;
      state.elapsed = Math.max(state.elapsed, (now - created) / 1000);
      $("timer").textContent = t("running") + " " + mmss(state.elapsed);
      $("stale").textContent = t("stale").replace("{s}", mmss(serverSeconds()));
      show($("stale"), b.heartbeat.isStale);
    }

    function fail(res, body) {
      var error = new Error(body && body.error === "JOB_NOT_FOUND" ? t("notFound")
        : res.status === 401 ? (token() ? t("unauthorized") : t("noToken"))
        : (body && body.error) || ("HTTP " + res.status));
      error.fatal = res.status === 401 || res.status === 404 || res.status === 403;
      return error;
    }

    function fetchJob() {
      return fetch(api("jobs/" + encodeURIComponent(jobId)), { headers: headers(), cache: "no-store" })
        .then(function (res) {
          return res.json().then(function (body) {
            if (res.status !== 200) throw fail(res, body);
            return body;
          }, function () { throw fail(res, null); });
        });
    }

    function poll() {
      if (state.stopped) return;
      setMode("poll");
      fetchJob().then(function (body) {
        render(body);
        if (!body.done) setTimeout(poll, POLL_MS);
      }).catch(function (err) {
        showError(err.message);
        if (!err.fatal) setTimeout(poll, POLL_MS);
      });
    }

    function handleBlock(block) {
      var type = "message";
      var data = [];
      var id = null;
      block.split("\n").forEach(function (line) {
        var colon = line.indexOf(":");
        if (colon === 0) return; // a comment: the server's keep-alive
        var field = colon < 0 ? line : line.slice(0, colon);
        var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") id = value;
        else if (field === "event") type = value;
        else if (field === "data") data.push(value);
      });
      if (id !== null) stream.lastId = id;
      if (!data.length) return;
      var body = JSON.parse(data.join("\n"));
      if (type === "error") throw new Error(body.error || "stream error");
      render(body);
    }

    function sse(failures) {
      if (state.stopped) return;
      setMode("sse");
      var controller = new AbortController();
      var lastId = stream ? stream.lastId : (state.body ? String(state.body.version) : "");
      stream = { lastId: lastId, abort: function () { controller.abort(); } };
      var extra = { "Accept": "text/event-stream" };
      if (lastId) extra["Last-Event-ID"] = lastId;
      fetch(api("jobs/" + encodeURIComponent(jobId) + "/events"), {
        headers: headers(extra), cache: "no-store", signal: controller.signal
      }).then(function (res) {
        if (res.status !== 200 || !res.body || !window.TextDecoderStream) throw new Error("no stream");
        failures = 0;
        return readBlocks(res, handleBlock);
      }).then(function () {
        // The server ends the stream after a terminal stage, or when it restarts.
        if (!state.stopped) setTimeout(function () { sse(0); }, 1000);
      }).catch(function () {
        if (state.stopped) return;
        if (failures >= 1) poll(); else setTimeout(function () { sse(failures + 1); }, 1000);
      });
    }

    function loadHistory() {
      fetch(api("jobs/" + encodeURIComponent(jobId) + "/history"), { headers: headers(), cache: "no-store" })
        .then(function (res) {
          return res.json().then(function (body) {
            if (res.status !== 200) throw fail(res, body);
            return body;
          });
        })
        .then(function (body) {
          var tbody = $("history");
          tbody.textContent = "";
          (body.events || []).forEach(function (e) {
            var tr = document.createElement("tr");
            [String(e.version), e.at, e.type, JSON.stringify(e.data)].forEach(function (text, i) {
              var td = document.createElement("td");
              td.textContent = text;
              if (i === 3) td.className = "data";
              tr.appendChild(td);
            });
            tbody.appendChild(tr);
          });
          state.history = body.events || [];
        })
        .catch(function (err) {
          $("details-error").textContent = t("historyFailed") + ": " + err.message;
          show($("details-error"), true);
        });
    }

    function act(action, payload) {
      // POST cancel or retry; a retry's answer names the new job, which the page then follows.
      ["cancel", "retry", "rerender"].forEach(function (id) { $(id).disabled = true; });
      return answer(fetch(api("jobs/" + encodeURIComponent(jobId) + "/" + action), {
        method: "POST", headers: headers({ "Content-Type": "application/json" }),
        body: JSON.stringify(payload || {})
      })).then(function (r) {
        if (action === "retry" && r.status === 202 && r.body.jobId) {
          location.href = root + "music-clips/jobs/" + encodeURIComponent(r.body.jobId);
          return;
        }
        if (r.status === 200) render(r.body);
        else showError(t("actionFailed") + ": " + (r.body.message || r.body.error || ("HTTP " + r.status)));
      }).catch(function (err) {
        showError(t("actionFailed") + ": " + err.message);
      }).then(function () {
        ["cancel", "retry", "rerender"].forEach(function (id) { $(id).disabled = false; });
      });
    }

    $("cancel").addEventListener("click", function () {
      if (window.confirm(t("confirmCancel"))) act("cancel");
    });
    $("retry").addEventListener("click", function () { act("retry", { from: "start" }); });
    $("rerender").addEventListener("click", function () { act("retry", { from: "clip" }); });

    $("details-toggle").addEventListener("click", function () {
      state.detailsOpen = !state.detailsOpen;
      show($("details"), state.detailsOpen);
      $("details-toggle").textContent = state.detailsOpen ? t("hideDetails") : t("details");
      $("details-toggle").setAttribute("aria-expanded", String(state.detailsOpen));
      if (state.detailsOpen) loadHistory();
    });

    var copyButtons = document.querySelectorAll("[data-copy]");
    for (var i = 0; i < copyButtons.length; i++) {
      copyButtons[i].addEventListener("click", function (ev) {
        var button = ev.currentTarget;
        var text = $(button.getAttribute("data-copy")).textContent;
        var report = function (ok) {
          button.textContent = t(ok ? "copied" : "copyFailed");
          setTimeout(function () { button.textContent = t("copy"); }, 1500);
        };
        var legacy = function () {
          var area = document.createElement("textarea");
          area.value = text;
          document.body.appendChild(area);
          area.select();
          var ok = false;
          try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
          area.remove();
          report(ok);
        };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(function () { report(true); }, legacy);
        } else legacy();
      });
    }

    if (!token()) { showError(t("noToken")); return; }
    timers.push(setInterval(tick, 1000));
    // SSE reports changes, not silence: refresh the heartbeat while streaming.
    timers.push(setInterval(function () {
      if (state.mode === "sse" && state.body && !state.stopped) fetchJob().then(render, function () {});
    }, POLL_MS));
    fetchJob().then(function (body) {
      render(body);
      if (!body.done) sse(0);
    }).catch(function (err) {
      showError(err.message);
      if (!err.fatal) poll();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.getAttribute("data-page");
    if (page !== "start" && page !== "job") return; // another page's script runs it
    applyTexts(t);
    if (page === "start") startPage();
    else jobPage();
  });
})();
