// pxeherd admin UI: live updates over server-sent events. No framework, no innerHTML:
// event data is put into the page with textContent only.
'use strict';
(function () {
  var page = document.body.getAttribute('data-page');
  if (!window.EventSource || ['nodes', 'node', 'events'].indexOf(page) < 0) return;

  function cell(tr, text, cls) {
    var td = document.createElement('td');
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function onNodes(ev) {
    if (!ev.mac) return;
    var row = document.querySelector('#nodes tr[data-mac="' + ev.mac + '"]');
    if (!row) return;
    var contact = row.querySelector('.contact');
    if (contact) contact.textContent = 'just now';
    if (ev.kind === 'provision.start' && ev.detail && ev.detail.state) row.querySelector('.state').textContent = ev.detail.state;
    if (ev.kind === 'dhcp.ack' && ev.detail && ev.detail.ip) row.querySelector('.ip').textContent = ev.detail.ip;
    row.classList.add('updated');
  }

  function onNode(ev) {
    var tl = document.getElementById('timeline');
    if (!tl || ev.mac !== tl.getAttribute('data-mac')) return;
    var live = document.getElementById('live-events');
    if (!live) {
      var sec = document.createElement('section');
      sec.className = 'boot-run live';
      var h = document.createElement('h3');
      h.textContent = 'Live (reload for timings)';
      sec.appendChild(h);
      var table = document.createElement('table');
      table.className = 'grid timeline';
      live = document.createElement('tbody');
      live.id = 'live-events';
      table.appendChild(live);
      sec.appendChild(table);
      tl.insertBefore(sec, tl.firstChild);
      var none = document.getElementById('no-events');
      if (none) none.remove();
    }
    var tr = document.createElement('tr');
    if (ev.failed) tr.className = 'failed';
    cell(tr, ev.time, 'mono');
    cell(tr, ev.kind, 'kind');
    var td = cell(tr, withServer(ev));
    if (ev.detail && typeof ev.detail.stderr === 'string' && ev.detail.stderr) {
      var pre = document.createElement('pre');
      pre.className = 'stderr';
      pre.textContent = ev.detail.stderr;
      td.appendChild(pre);
    }
    live.appendChild(tr);
  }

  function onFeed(ev) {
    var body = document.querySelector('#events tbody');
    if (!body) return;
    var tr = document.createElement('tr');
    if (ev.failed) tr.className = 'failed';
    cell(tr, ev.time, 'mono');
    var td = cell(tr, '');
    if (ev.node) {
      var a = document.createElement('a');
      a.href = '/ui/nodes/' + encodeURIComponent(ev.node);
      a.textContent = ev.node;
      td.appendChild(a);
    } else td.textContent = '-';
    cell(tr, ev.mac || '-', 'mono');
    cell(tr, ev.kind, 'kind');
    cell(tr, withServer(ev));
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > 500) body.deleteRow(-1);
  }

  // On PostgreSQL several servers record events: each says which one (ev.server).
  function withServer(ev) {
    return ev.server ? '[' + ev.server + '] ' + ev.summary : ev.summary;
  }

  var handler = page === 'nodes' ? onNodes : page === 'node' ? onNode : onFeed;
  var status = document.getElementById('live-status');
  // The feed page resumes after its newest row (on PostgreSQL, where the stream is in database
  // id order), so nothing recorded between the page and the stream is missed or shown twice.
  var newest = page === 'events' ? document.querySelector('#events tbody tr[data-id]') : null;
  var from = newest && /^[0-9]+$/.test(newest.getAttribute('data-id')) ? '?lastEventId=' + newest.getAttribute('data-id') : '';
  var es = new EventSource('/ui/events/stream' + from);
  es.onopen = function () {
    if (status) status.textContent = 'live';
  };
  es.onerror = function () {
    if (status) status.textContent = 'reconnecting…';
  };
  es.addEventListener('boot', function (m) {
    try {
      handler(JSON.parse(m.data));
    } catch (e) {
      /* one bad frame must not stop the feed */
    }
  });
})();
