// @ts-check
/**
 * The staff page's script, served as /assets/app.js (so that the Content-Security-Policy needs no
 * 'unsafe-inline'). Plain ES2020 for current browsers, no build step. Every piece of alert text goes
 * into the page through textContent, never as HTML. Type-checked by tsc through JSDoc (page/tsconfig.json).
 */
(function () {
  'use strict';

  /**
   * @typedef {{ id: string, name?: string | null, email?: string | null }} Person
   * @typedef {{
   *   id: string, title: string, message: string, severity: string, status: string, expired?: boolean,
   *   alert_type: string, source_entity_name?: string | null, context?: unknown,
   *   created_date: string, updated_date: string, expires_date?: string | null,
   *   acknowledged_date?: string | null, acknowledged_by?: Person | null,
   * }} Alert
   * @typedef {{ element: HTMLElement, alert: Alert, version: string }} Card
   * @typedef {Error & { status?: number }} HttpError
   */

  var TOKEN_KEY = 'rulebook.token';
  var SEVERITIES = ['critical', 'high', 'medium', 'low'];
  /** @type {Record<string, string>} */
  var LABELS = { critical: 'Critical', high: 'High', medium: 'Medium', low: 'Low' };
  var PAGE_SIZE = 200;
  var MAX_PAGES = 10;
  var NOTES_MAX = 2000;

  /** @type {string | null} */
  var token = null;
  /** @type {Map<string, Alert>} */
  var alerts = new Map();
  /** @type {Map<string, Card>} */
  var cards = new Map();
  /** @type {EventSource | null} */
  var source = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  var retryTimer = null;
  var seq = 0;
  /** @type {{ seq: number, alert: Alert }[]} */
  var changes = [];

  /**
   * The page's own elements: one missing is a broken page, so say which.
   * @param {string} id
   * @returns {HTMLElement}
   */
  function byId(id) {
    var node = document.getElementById(id);
    if (!node) throw new Error('The page has no #' + id + '.');
    return node;
  }

  /**
   * @param {string} id
   * @returns {HTMLInputElement}
   */
  function inputById(id) {
    return /** @type {HTMLInputElement} */ (byId(id));
  }

  /**
   * @template {keyof HTMLElementTagNameMap} K
   * @param {K} tag
   * @param {string | null} [className]
   * @param {unknown} [text]
   * @returns {HTMLElementTagNameMap[K]}
   */
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /** @param {string} text */
  function announce(text) {
    var region = byId('announcer');
    region.appendChild(el('p', null, text));
    while (region.firstChild && region.childNodes.length > 5) region.removeChild(region.firstChild);
  }

  /** @param {string | null | undefined} value */
  function formatTime(value) {
    var date = new Date(/** @type {string} */ (value));
    return isNaN(date.getTime())
      ? String(value)
      : date.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
  }

  /** @param {string | null | undefined} value */
  function timeElement(value) {
    var node = el('time', null, formatTime(value));
    node.setAttribute('datetime', String(value));
    return node;
  }

  /** @param {Alert} alert */
  function isOpen(alert) {
    if (alert.status === 'acknowledged') return true;
    return alert.status === 'active' && !alert.expired;
  }

  /** @param {unknown} error */
  function errorText(error) {
    return error instanceof Error ? error.message : String(error);
  }

  /**
   * A card's element that has this data-role; cards are built with every role they are asked for.
   * @param {Element} card
   * @param {string} role
   * @returns {HTMLElement}
   */
  function roleIn(card, role) {
    return /** @type {HTMLElement} */ (card.querySelector('[data-role="' + role + '"]'));
  }

  // Every request carries the token; 401 and 403 end the session.
  /**
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @returns {Promise<any>} the answer's JSON, shaped as the API documents it
   */
  async function api(method, path, body) {
    /** @type {Record<string, string>} */
    var headers = { Authorization: 'Bearer ' + token, Accept: 'application/json' };
    /** @type {RequestInit} */
    var init = { method: method, headers: headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    var response = await fetch(path, init);
    var data = await response.json().catch(function () {
      return {};
    });
    if (response.status === 401 || response.status === 403) {
      signOut(data.error || 'Your token is no longer valid. Sign in again.');
      /** @type {HttpError} */
      var denied = new Error(data.error || 'signed out');
      denied.status = response.status;
      throw denied;
    }
    if (!response.ok) {
      /** @type {HttpError} */
      var error = new Error(data.error || 'The server answered ' + response.status + '.');
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // ---- session ----

  /** @param {string} message */
  function showSignIn(message) {
    byId('session').hidden = true;
    byId('alerts').hidden = true;
    byId('sign-in').hidden = false;
    byId('sign-in-error').textContent = message || '';
    inputById('token').value = '';
    inputById('token').focus();
  }

  /** @param {string} message */
  function signOut(message) {
    closeStream();
    token = null;
    localStorage.removeItem(TOKEN_KEY);
    alerts.clear();
    cards.clear();
    changes = [];
    byId('groups').textContent = '';
    showSignIn(message);
  }

  /**
   * @param {string} candidate
   * @param {boolean} fromForm
   */
  async function signIn(candidate, fromForm) {
    token = candidate;
    var me;
    try {
      me = await api('GET', '/api/me');
    } catch (error) {
      if (token !== null) {
        token = null;
        showSignIn(errorText(error));
      }
      return;
    }
    localStorage.setItem(TOKEN_KEY, candidate);
    byId('who').textContent = 'Signed in as ' + (me.name || me.email || me.id);
    byId('sign-in').hidden = true;
    byId('session').hidden = false;
    byId('alerts').hidden = false;
    byId('sign-in-error').textContent = '';
    if (fromForm) byId('main').focus();
    openStream();
    await loadAlerts();
  }

  // ---- data ----

  /** @param {Alert} alert */
  function remember(alert) {
    seq += 1;
    changes.push({ seq: seq, alert: alert });
    if (changes.length > 500) changes.splice(0, changes.length - 500);
    apply(alert);
  }

  /** @param {Alert} alert */
  function apply(alert) {
    var known = alerts.get(alert.id);
    if (known && new Date(known.updated_date) > new Date(alert.updated_date)) return;
    alerts.set(alert.id, alert);
  }

  // The list from the server; changes heard while it loaded are laid over it, newest wins.
  async function loadAlerts() {
    var from = seq;
    /** @type {Alert[]} */
    var fresh = [];
    /** @type {string | null} */
    var cursor = null;
    try {
      for (var page = 0; page < MAX_PAGES; page += 1) {
        var path = '/api/alerts/mine?status=active,acknowledged&limit=' + PAGE_SIZE;
        if (cursor) path += '&cursor=' + encodeURIComponent(cursor);
        var data = await api('GET', path);
        fresh = fresh.concat(data.alerts);
        cursor = data.next_cursor;
        if (!cursor) break;
      }
    } catch (error) {
      if (token !== null) byId('load-error').textContent = 'Could not load alerts: ' + errorText(error);
      return;
    }
    byId('load-error').textContent = '';
    alerts = new Map();
    fresh.forEach(function (alert) {
      alerts.set(alert.id, alert);
    });
    changes.forEach(function (change) {
      if (change.seq > from) apply(change.alert);
    });
    render();
  }

  // ---- rendering ----

  /** @param {string} severity */
  function group(severity) {
    var existing = document.getElementById('group-' + severity);
    if (existing) return existing;
    var section = el('section', 'group ' + severity);
    section.id = 'group-' + severity;
    section.setAttribute('aria-labelledby', 'group-title-' + severity);
    var heading = el('h2');
    heading.id = 'group-title-' + severity;
    section.appendChild(heading);
    section.appendChild(el('ol'));
    byId('groups').appendChild(section);
    return section;
  }

  /**
   * @param {Alert} a
   * @param {Alert} b
   */
  function newestFirst(a, b) {
    return new Date(b.created_date).getTime() - new Date(a.created_date).getTime() || (a.id < b.id ? 1 : -1);
  }

  function render() {
    var open = Array.from(alerts.values()).filter(isOpen);
    cards.forEach(function (card, id) {
      var alert = alerts.get(id);
      if (!alert || !isOpen(alert) || alert.severity !== card.alert.severity) {
        card.element.remove();
        cards.delete(id);
      }
    });
    SEVERITIES.forEach(function (severity) {
      var section = group(severity);
      var list = /** @type {HTMLOListElement} */ (section.querySelector('ol'));
      var items = open.filter(function (alert) {
        return alert.severity === severity;
      });
      items.sort(newestFirst);
      section.hidden = items.length === 0;
      /** @type {HTMLElement} */ (section.querySelector('h2')).textContent =
        LABELS[severity] + ' (' + items.length + ')';
      items.forEach(function (alert, index) {
        var card = cardFor(alert);
        var current = list.children[index];
        if (current !== card) list.insertBefore(card, current || null);
      });
    });
    var waiting = open.filter(function (alert) {
      return alert.status === 'active';
    }).length;
    var acknowledged = open.length - waiting;
    byId('summary').textContent =
      waiting +
      (waiting === 1 ? ' alert needs' : ' alerts need') +
      ' attention' +
      (acknowledged > 0 ? ' · ' + acknowledged + ' acknowledged' : '');
    byId('empty').hidden = open.length > 0;
  }

  /** @param {Alert} alert */
  function version(alert) {
    return alert.status + '|' + alert.updated_date;
  }

  // Cards are rebuilt only when their alert changed, keeping typed notes, messages and focus.
  /** @param {Alert} alert */
  function cardFor(alert) {
    var existing = cards.get(alert.id);
    if (existing && existing.version === version(alert)) return existing.element;
    var element = buildCard(alert, existing ? existing.element : null);
    if (existing) {
      var active = document.activeElement;
      var focused =
        active instanceof HTMLElement && existing.element.contains(active) ? active.dataset.role : null;
      existing.element.replaceWith(element);
      if (focused) {
        /** @type {HTMLElement | null} */
        var again =
          element.querySelector('[data-role="' + focused + '"]') ||
          element.querySelector('[data-role="state"]');
        if (again) again.focus();
      }
    }
    cards.set(alert.id, { element: element, alert: alert, version: version(alert) });
    return element;
  }

  /** @param {unknown} context */
  function contextList(context) {
    if (!context || typeof context !== 'object' || Array.isArray(context)) {
      var pre = el('dl', 'context');
      pre.appendChild(el('dt', null, 'value'));
      pre.appendChild(el('dd', null, JSON.stringify(context, null, 2)));
      return pre;
    }
    var list = el('dl', 'context');
    var fields = /** @type {Record<string, unknown>} */ (context);
    Object.keys(fields).forEach(function (key) {
      var value = fields[key];
      list.appendChild(el('dt', null, key));
      list.appendChild(el('dd', null, typeof value === 'string' ? value : JSON.stringify(value, null, 2)));
    });
    return list;
  }

  /**
   * @param {Alert} alert
   * @param {HTMLElement | null} previous
   */
  function buildCard(alert, previous) {
    var item = el('li', 'alert ' + alert.severity);
    item.id = 'alert-' + alert.id;
    item.dataset.alertId = alert.id;
    var article = el('article');
    var titleId = 'alert-title-' + alert.id;
    article.setAttribute('aria-labelledby', titleId);
    item.appendChild(article);

    var head = el('div', 'alert-head');
    head.appendChild(el('span', 'badge ' + alert.severity, LABELS[alert.severity] || alert.severity));
    var title = el('h3', null, alert.title);
    title.id = titleId;
    title.tabIndex = -1;
    title.dataset.role = 'title';
    head.appendChild(title);
    var state = el('span', 'state', alert.status === 'acknowledged' ? 'Acknowledged' : '');
    state.tabIndex = -1;
    state.dataset.role = 'state';
    head.appendChild(state);
    article.appendChild(head);

    var meta = el('p', 'meta');
    meta.appendChild(document.createTextNode('Raised '));
    meta.appendChild(timeElement(alert.created_date));
    meta.appendChild(document.createTextNode(' · ' + alert.alert_type));
    if (alert.source_entity_name) meta.appendChild(document.createTextNode(' · ' + alert.source_entity_name));
    if (alert.expires_date) {
      meta.appendChild(document.createTextNode(' · expires '));
      meta.appendChild(timeElement(alert.expires_date));
    }
    article.appendChild(meta);
    article.appendChild(el('p', 'message', alert.message));

    var context = alert.context;
    var hasContext =
      context !== null &&
      context !== undefined &&
      !(typeof context === 'object' && !Array.isArray(context) && Object.keys(context).length === 0);
    if (hasContext) {
      var details = el('details');
      details.appendChild(el('summary', null, 'Details'));
      details.appendChild(contextList(context));
      if (previous) {
        var old = previous.querySelector('details');
        if (old && old.open) details.open = true;
      }
      article.appendChild(details);
    }

    if (alert.status === 'acknowledged' && alert.acknowledged_by) {
      var note = el('p', 'ack-note');
      note.appendChild(
        document.createTextNode(
          'Acknowledged by ' +
            (alert.acknowledged_by.name || alert.acknowledged_by.email || 'someone') +
            ' on ',
        ),
      );
      note.appendChild(timeElement(alert.acknowledged_date));
      article.appendChild(note);
    }

    var actions = el('div', 'actions');
    /** @type {HTMLTextAreaElement | null} */
    var notes = null;
    if (alert.status === 'active') {
      var notesId = 'notes-' + alert.id;
      var label = el('label', null, 'Notes (optional)');
      label.htmlFor = notesId;
      var typing = el('textarea');
      typing.id = notesId;
      typing.maxLength = NOTES_MAX;
      typing.rows = 2;
      typing.dataset.role = 'notes';
      if (previous) {
        var typed = previous.querySelector('textarea');
        if (typed) typing.value = typed.value;
      }
      actions.appendChild(label);
      actions.appendChild(typing);
      notes = typing;
    }
    var buttons = el('div', 'buttons');
    if (alert.status === 'active') {
      var ack = el('button', 'primary', 'Acknowledge');
      ack.type = 'button';
      ack.dataset.role = 'acknowledge';
      ack.setAttribute('aria-describedby', titleId);
      ack.addEventListener('click', function () {
        act(alert, 'acknowledge', item, notes);
      });
      buttons.appendChild(ack);
    }
    var dismiss = el('button', 'secondary', 'Dismiss');
    dismiss.type = 'button';
    dismiss.dataset.role = 'dismiss';
    dismiss.setAttribute('aria-describedby', titleId);
    dismiss.addEventListener('click', function () {
      act(alert, 'dismiss', item, null);
    });
    buttons.appendChild(dismiss);
    actions.appendChild(buttons);
    var error = el('p', 'error');
    error.setAttribute('role', 'alert');
    error.dataset.role = 'error';
    if (previous) {
      var shown = previous.querySelector('[data-role="error"]');
      if (shown) error.textContent = shown.textContent;
    }
    actions.appendChild(error);
    article.appendChild(actions);
    return item;
  }

  /**
   * @param {Alert} alert
   * @param {'acknowledge' | 'dismiss'} kind
   * @param {HTMLElement} item
   * @param {HTMLTextAreaElement | null} notes
   */
  async function act(alert, kind, item, notes) {
    var card = cards.get(alert.id);
    var element = card ? card.element : item;
    var controls = element.querySelectorAll('button, textarea');
    controls.forEach(function (control) {
      /** @type {HTMLButtonElement | HTMLTextAreaElement} */ (control).disabled = true;
    });
    roleIn(element, 'error').textContent = '';
    /** @type {{ notes?: string }} */
    var body = {};
    if (notes && notes.value.trim() !== '') body.notes = notes.value.trim();
    var next = nextCard(alert.id);
    try {
      var data = await api('POST', '/api/alerts/' + encodeURIComponent(alert.id) + '/' + kind, body);
      remember(data.alert);
      render();
      announce((kind === 'acknowledge' ? 'Acknowledged: ' : 'Dismissed: ') + alert.title);
      var now = cards.get(alert.id);
      if (now) {
        roleIn(now.element, 'state').focus();
      } else if (next && document.body.contains(next)) {
        roleIn(next, 'title').focus();
      } else {
        byId('summary').tabIndex = -1;
        byId('summary').focus();
      }
    } catch (error) {
      if (token === null) return;
      var current = cards.get(alert.id);
      var target = current ? current.element : element;
      target.querySelectorAll('button, textarea').forEach(function (control) {
        /** @type {HTMLButtonElement | HTMLTextAreaElement} */ (control).disabled = false;
      });
      roleIn(target, 'error').textContent = errorText(error);
      var status = /** @type {HttpError} */ (error).status;
      if (status === 409 || status === 404) {
        // Someone else got there first: show the alert as it is now.
        api('GET', '/api/alerts/' + encodeURIComponent(alert.id)).then(
          function (fresh) {
            remember(fresh.alert);
            render();
          },
          function () {
            alerts.delete(alert.id);
            render();
          },
        );
      }
    }
  }

  /**
   * @param {string} id
   * @returns {HTMLElement | null}
   */
  function nextCard(id) {
    var ordered = Array.from(document.querySelectorAll('#groups li.alert'), function (node) {
      return /** @type {HTMLElement} */ (node);
    });
    var index = ordered.findIndex(function (node) {
      return node.dataset.alertId === id;
    });
    return ordered[index + 1] || ordered[index - 1] || null;
  }

  // ---- live updates ----

  /** @param {'connecting' | 'live' | 'down'} state */
  function setConnection(state) {
    var node = byId('connection');
    node.className = 'connection ' + state;
    node.textContent = state === 'live' ? 'Live' : state === 'down' ? 'Offline, retrying…' : 'Connecting…';
  }

  function closeStream() {
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = null;
    if (source) source.close();
    source = null;
  }

  function openStream() {
    closeStream();
    setConnection('connecting');
    var stream = new EventSource('/api/alerts/stream?access_token=' + encodeURIComponent(token || ''));
    source = stream;
    var opened = false;
    stream.addEventListener('open', function () {
      setConnection('live');
      // Anything sent while the stream was down was missed: load the list again.
      if (opened) loadAlerts();
      opened = true;
    });
    stream.addEventListener('alert', function (event) {
      var alert = /** @type {Alert} */ (JSON.parse(/** @type {MessageEvent} */ (event).data));
      var known = alerts.has(alert.id);
      remember(alert);
      var isNew = !known && isOpen(alert);
      render();
      if (isNew) {
        var card = cards.get(alert.id);
        if (card) card.element.classList.add('is-new');
        announce(
          'New ' + (LABELS[alert.severity] || alert.severity).toLowerCase() + ' alert: ' + alert.title,
        );
      }
    });
    stream.addEventListener('resync', function () {
      loadAlerts();
    });
    stream.addEventListener('signed-out', function () {
      signOut('Your token is no longer valid. Sign in again.');
    });
    stream.addEventListener('error', function () {
      if (stream !== source) return;
      if (stream.readyState !== EventSource.CLOSED) {
        setConnection('connecting');
        return;
      }
      // The server refused the stream (a bad token answers 401) or is gone: check, then retry.
      setConnection('down');
      retryTimer = setTimeout(function () {
        api('GET', '/api/me').then(
          function () {
            if (token !== null) openStream();
          },
          function () {
            if (token !== null) openStream();
          },
        );
      }, 5000);
    });
  }

  // ---- start ----

  document.addEventListener('DOMContentLoaded', function () {
    byId('sign-in-form').addEventListener('submit', async function (event) {
      event.preventDefault();
      var value = inputById('token').value.trim();
      if (value === '') {
        byId('sign-in-error').textContent = 'Paste your token first.';
        inputById('token').focus();
        return;
      }
      var form = /** @type {HTMLFormElement} */ (event.target);
      var button = /** @type {HTMLButtonElement} */ (form.querySelector('button'));
      button.disabled = true;
      try {
        await signIn(value, true);
      } finally {
        button.disabled = false;
      }
    });
    byId('sign-out').addEventListener('click', function () {
      signOut('');
    });
    byId('refresh').addEventListener('click', function () {
      loadAlerts();
    });
    var saved = localStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved, false);
    else showSignIn('');
  });
})();
