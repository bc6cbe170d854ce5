// Live refresh of the ordersaga dashboards: every few seconds, fetch this page again and swap in the
// fresh content of each element marked `data-live` (matched by id). No reload, so the scroll position,
// the filter form and any open <details> stay as they are. Pauses while the tab is hidden.
(function () {
  'use strict';

  var body = document.body;
  var interval = Number(body.getAttribute('data-refresh-ms')) || 0;
  var live = document.getElementById('live');
  var status = document.getElementById('live-status');
  var toggle = document.getElementById('live-toggle');
  if (!interval || !live || !status) {
    return;
  }

  var paused = false;
  var busy = false;
  var refreshes = 0;

  function setStatus(text, state) {
    live.classList.toggle('paused', state === 'paused');
    live.classList.toggle('error', state === 'error');
    status.textContent = text;
  }

  function openDetails(element) {
    var open = [];
    element.querySelectorAll('details[open]').forEach(function (d, i) { open.push(i); });
    return open;
  }

  function swap(fresh) {
    var changed = 0;
    document.querySelectorAll('[data-live][id]').forEach(function (element) {
      var next = fresh.getElementById(element.id);
      if (!next || next.innerHTML === element.innerHTML) {
        return;
      }
      var open = openDetails(element);
      element.innerHTML = next.innerHTML;
      element.className = next.className;
      var details = element.querySelectorAll('details');
      open.forEach(function (i) { if (details[i]) { details[i].open = true; } });
      changed += 1;
    });
    return changed;
  }

  function refresh() {
    if (paused || busy || document.hidden) {
      return;
    }
    busy = true;
    fetch(window.location.href, { headers: { 'Accept': 'text/html' }, cache: 'no-store', credentials: 'same-origin' })
      .then(function (response) {
        if (!response.ok) {
          throw new Error('HTTP ' + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, 'text/html');
        swap(fresh);
        refreshes += 1;
        body.setAttribute('data-live-refreshes', String(refreshes));
        var generated = fresh.getElementById('generated');
        setStatus('Live · updated ' + (generated ? generated.textContent : new Date().toISOString().slice(11, 19) + ' UTC'), 'on');
      })
      .catch(function (error) {
        setStatus('Live · refresh failed (' + error.message + '), retrying', 'error');
      })
      .then(function () {
        busy = false;
      });
  }

  if (toggle) {
    toggle.addEventListener('click', function () {
      paused = !paused;
      toggle.textContent = paused ? 'Resume' : 'Pause';
      toggle.setAttribute('aria-pressed', paused ? 'true' : 'false');
      if (paused) {
        setStatus('Live · paused', 'paused');
      } else {
        refresh();
      }
    });
  }
  document.addEventListener('visibilitychange', function () {
    if (!document.hidden) {
      refresh();
    }
  });
  window.setInterval(refresh, interval);
}());
