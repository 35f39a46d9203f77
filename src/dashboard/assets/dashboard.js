// veer dashboard: the page follows the cluster, and the buttons ask Veer.
//
// Every second the page asks /api/state for the dashboard's generation (a counter that moves at
// each change its watches see); when it moved, the page fetches itself again and swaps its
// content. The buttons POST to the dashboard with the token of the page (X-Veer-Token) and show
// the answer; Abort and Promote without checks take a second click.
'use strict';
(function () {
  const token = document.querySelector('meta[name="veer-token"]').content;
  const live = document.getElementById('live');
  const answer = document.getElementById('answer');
  let generation = document.getElementById('content').dataset.generation;
  let sending = false;
  let armed = null; // {control, until}

  function show(message, kind) {
    answer.hidden = false;
    answer.className = 'answer ' + kind;
    answer.textContent = message;
  }

  function decorate() {
    for (const b of document.querySelectorAll('button[data-control]')) {
      if (sending) b.disabled = true;
      const isArmed = armed && armed.control === b.dataset.control && Date.now() < armed.until;
      if (isArmed && !b.disabled) {
        b.classList.add('armed');
        b.textContent = 'Click again: ' + b.textContent;
      }
    }
  }

  async function refresh() {
    try {
      const state = await (await fetch('/api/state', { cache: 'no-store' })).json();
      if (String(state.generation) !== generation) {
        const response = await fetch(location.pathname, { cache: 'no-store' });
        const doc = new DOMParser().parseFromString(await response.text(), 'text/html');
        const next = doc.getElementById('content');
        if (next) {
          document.getElementById('content').replaceWith(next);
          generation = next.dataset.generation;
          decorate();
        }
      }
      live.textContent = 'live';
      live.classList.remove('offline');
    } catch (e) {
      live.textContent = 'dashboard unreachable';
      live.classList.add('offline');
    }
  }

  async function loop() {
    await refresh();
    setTimeout(loop, 1000);
  }
  setTimeout(loop, 1000);

  document.addEventListener('click', async (event) => {
    const button = event.target.closest('button[data-control]');
    if (!button || button.disabled || sending) return;
    const control = button.dataset.control;
    if (button.dataset.confirm && !(armed && armed.control === control && Date.now() < armed.until)) {
      armed = { control, until: Date.now() + 5000 };
      button.classList.add('armed');
      button.textContent = 'Click again: ' + button.textContent;
      setTimeout(() => { generation = ''; refresh(); }, 5000);
      return;
    }
    armed = null;
    sending = true;
    decorate();
    show(control + ': sending, waiting for Veer\u2019s answer\u2026', 'pending');
    try {
      const response = await fetch(button.dataset.url, {
        method: 'POST',
        headers: { 'X-Veer-Token': token },
      });
      const text = await response.text();
      let body;
      try { body = JSON.parse(text); } catch (e) { body = { ok: false, message: response.status + ' ' + text }; }
      show(body.message, body.ok ? 'ok' : 'refused');
    } catch (e) {
      show(control + ': the dashboard did not answer (' + e + ')', 'refused');
    }
    sending = false;
    generation = '';
    refresh();
  });
})();
