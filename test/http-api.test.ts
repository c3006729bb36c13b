import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken, revokeToken } from '../src/admin/tokens.js';
import type { Engine } from '../src/engine/engine.js';
import type { HttpServer } from '../src/http/server.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine } from './support/engine.js';
import { createRule } from './support/rules.js';
import { createStaffUser, openSse, roleId, startHttp, type StaffUser } from './support/staff.js';
import { waitFor } from './support/wait.js';
import { createTable } from './support/tables.js';

// The staff API through the real server: a person signs in with a token and sees, acknowledges
// and dismisses the alerts addressed to them or to one of their roles, and nobody else's.

let db: TestDatabase;
let engine: Engine;
let server: HttpServer;
let base: string;
let ann: StaffUser; // in role "ops"
let bob: StaffUser; // no roles
let opsRole: string;

beforeAll(async () => {
  db = await createTestDatabase();
  await createTable(
    db,
    'sales.orders',
    `id uuid primary key default gen_random_uuid(), status text not null`,
  );
  ann = await createStaffUser(db, 'ann@example.com', { roles: ['ops'], name: 'Ann' });
  bob = await createStaffUser(db, 'bob@example.com', { name: 'Bob' });
  opsRole = await roleId(db, 'ops');
  engine = await startEngine(db);
  ({ server, base } = await startHttp(db, {
    engine,
    // Plenty for the deliberate failures below; the limiter has its own server further down.
    staffApi: { authFailures: { max: 1000, windowMs: 60_000 }, heartbeatMs: 500 },
  }));
});

afterAll(async () => {
  await server?.stop();
  await engine?.stop();
  await db?.drop();
});

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

async function call(
  method: string,
  path: string,
  options: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined = options.raw;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  const response = await fetch(base + path, { method, headers, body });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    body: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : { text },
  };
}

type Recipient = { type: 'user' | 'role'; id: string };

/** An alert written directly, as create_alert would. */
async function insertAlert(options: {
  title?: string;
  severity?: string;
  status?: string;
  to: Recipient[];
  createdDate?: string;
  expiresDate?: string;
}): Promise<string> {
  const [row] = await db.query<{ id: string }>(
    `insert into workflow.alerts (alert_type, severity, title, message, context, status, created_date, expires_date)
     values ('test', $1, $2, 'message of ' || $2, '{"order": 7}', $3, coalesce($4::timestamptz, now()), $5)
     returning id`,
    [
      options.severity ?? 'medium',
      options.title ?? `alert ${randomUUID().slice(0, 8)}`,
      options.status ?? 'active',
      options.createdDate ?? null,
      options.expiresDate ?? null,
    ],
  );
  for (const recipient of options.to) {
    await db.query(
      `insert into workflow.alert_recipients (alert_id, recipient_type, recipient_id) values ($1, $2, $3)`,
      [row!.id, recipient.type, recipient.id],
    );
  }
  return row!.id;
}

const toAnn = (): Recipient[] => [{ type: 'user', id: ann.id }];
const toOps = (): Recipient[] => [{ type: 'role', id: opsRole }];
const toBob = (): Recipient[] => [{ type: 'user', id: bob.id }];

async function acknowledgments(alertId: string) {
  return db.query<{ acknowledged_by: string; notes: string | null }>(
    `select acknowledged_by, notes from workflow.alert_acknowledgments where alert_id = $1`,
    [alertId],
  );
}

async function statusOf(alertId: string): Promise<string> {
  const [row] = await db.query<{ status: string }>(`select status from workflow.alerts where id = $1`, [
    alertId,
  ]);
  return row!.status;
}

describe('public routes', () => {
  it('keeps /healthz and /metrics working without a token', async () => {
    const health = await call('GET', '/healthz');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'ok', database: { ok: true } });
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('rulebook_outbox_events');
  });

  it('serves the page and its assets with a Content-Security-Policy and no data', async () => {
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    const html = await page.text();
    expect(html).toContain('<meta name="viewport"');
    expect(html).toContain('aria-live="polite"');
    expect(html).not.toContain('ann@example.com');
    for (const [path, type] of [
      ['/assets/app.js', /^text\/javascript/],
      ['/assets/app.css', /^text\/css/],
    ] as const) {
      const asset = await fetch(base + path);
      expect(asset.status).toBe(200);
      expect(asset.headers.get('content-type')).toMatch(type);
      const etag = asset.headers.get('etag')!;
      expect((await fetch(base + path, { headers: { 'if-none-match': etag } })).status).toBe(304);
    }
    const script = await (await fetch(`${base}/assets/app.js`)).text();
    expect(script).not.toContain('innerHTML');
  });

  it('answers unknown routes with 404 JSON and wrong methods with 405', async () => {
    const missing = await call('GET', '/api/nothing-here', { token: ann.token });
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatch(/no route for GET \/api\/nothing-here/);
    const wrong = await call('DELETE', '/api/alerts/mine', { token: ann.token });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('GET');
    expect(wrong.body.error).toMatch(/DELETE is not allowed/);
    const getOnPost = await call('GET', '/api/alerts/acknowledge', { token: ann.token });
    expect(getOnPost.status).toBe(405);
    expect(getOnPost.headers.get('allow')).toBe('POST');
  });
});

describe('authentication', () => {
  it('refuses requests without a token, with a malformed header, or with an unknown token', async () => {
    const none = await call('GET', '/api/alerts/mine');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(none.body.error).toMatch(/Authorization: Bearer/);
    const basic = await call('GET', '/api/alerts/mine', { headers: { authorization: 'Basic YW5uOnB3' } });
    expect(basic.status).toBe(401);
    const unknown = await call('GET', '/api/alerts/mine', { token: `rbk_${'A'.repeat(43)}` });
    expect(unknown.status).toBe(401);
    expect(unknown.body.error).toMatch(/unknown token/);
    const garbage = await call('GET', '/api/alerts/mine', { token: 'hunter2' });
    expect(garbage.status).toBe(401);
    expect(garbage.body.error).toBe('that is not a rulebook token (they start with "rbk_")');
    const cut = await call('GET', '/api/alerts/mine', { token: `rbk_${'A'.repeat(20)}` });
    expect(cut.status).toBe(401);
    expect(cut.body.error).toBe(
      'that is not a whole rulebook token: "rbk_" and 43 letters, digits, "-" or "_" (was it cut short when pasted?)',
    );
  });

  it('refuses an expired token', async () => {
    const token = await createToken(db.pool, { email: ann.email, expiresInMs: 60_000 });
    expect((await call('GET', '/api/me', { token: token.token })).status).toBe(200);
    await db.query(`update core.api_tokens set expires_at = now() - interval '1 second' where id = $1`, [
      token.id,
    ]);
    const answer = await call('GET', '/api/me', { token: token.token });
    expect(answer.status).toBe(401);
    expect(answer.body.error).toMatch(/expired/);
  });

  it('refuses a revoked token', async () => {
    const token = await createToken(db.pool, { email: ann.email, expiresInMs: null });
    expect((await call('GET', '/api/me', { token: token.token })).status).toBe(200);
    await revokeToken(db.pool, token.id);
    const answer = await call('GET', '/api/alerts/mine', { token: token.token });
    expect(answer.status).toBe(401);
    expect(answer.body.error).toMatch(/revoked/);
  });

  it('refuses the tokens of a deactivated user', async () => {
    const cy = await createStaffUser(db, 'cy@example.com');
    expect((await call('GET', '/api/me', { token: cy.token })).status).toBe(200);
    await db.query(`update core.users set is_active = false where id = $1`, [cy.id]);
    const answer = await call('GET', '/api/me', { token: cy.token });
    expect(answer.status).toBe(403);
    expect(answer.body.error).toMatch(/deactivated/);
  });

  it('tells who is signed in and records when the token was last used', async () => {
    const me = await call('GET', '/api/me', { token: ann.token });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ id: ann.id, email: 'ann@example.com', name: 'Ann', roles: ['ops'] });
    const [row] = await db.query<{ last_used_at: Date | null }>(
      `select last_used_at from core.api_tokens where id = $1`,
      [ann.tokenId],
    );
    expect(row!.last_used_at).toBeInstanceOf(Date);
  });

  it('takes ?access_token= on the event stream only', async () => {
    const answer = await call('GET', `/api/alerts/mine?access_token=${ann.token}`);
    expect(answer.status).toBe(401);
  });

  it('keeps the secret out of the database: only its SHA-256 is stored', async () => {
    const rows = await db.query<{ token_hash: string }>(`select token_hash from core.api_tokens`);
    expect(rows.every((row) => /^[0-9a-f]{64}$/.test(row.token_hash))).toBe(true);
    expect(JSON.stringify(rows)).not.toContain(ann.token);
  });
});

describe('GET /api/alerts/mine', () => {
  it("lists the caller's alerts, direct and through a role, and nobody else's", async () => {
    const direct = await insertAlert({ title: 'direct to Ann', to: toAnn() });
    const viaRole = await insertAlert({ title: 'to the ops role', to: toOps() });
    const forBob = await insertAlert({ title: 'for Bob only', to: toBob() });
    const annIds = (
      (await call('GET', '/api/alerts/mine?limit=200', { token: ann.token })).body.alerts as {
        id: string;
      }[]
    ).map((a) => a.id);
    expect(annIds).toEqual(expect.arrayContaining([direct, viaRole]));
    expect(annIds).not.toContain(forBob);
    const bobIds = (
      (await call('GET', '/api/alerts/mine?limit=200', { token: bob.token })).body.alerts as {
        id: string;
      }[]
    ).map((a) => a.id);
    expect(bobIds).toContain(forBob);
    expect(bobIds).not.toContain(direct);
    expect(bobIds).not.toContain(viaRole);
  });

  it('shows active, unexpired alerts by default and filters by status and severity', async () => {
    const expired = await insertAlert({ title: 'expired', to: toAnn(), expiresDate: '2000-01-01T00:00:00Z' });
    const later = await insertAlert({
      title: 'expires later',
      to: toAnn(),
      expiresDate: '2999-01-01T00:00:00Z',
    });
    const resolved = await insertAlert({ title: 'resolved', status: 'resolved', to: toAnn() });
    const critical = await insertAlert({ title: 'critical one', severity: 'critical', to: toAnn() });
    const list = async (query: string) =>
      (await call('GET', `/api/alerts/mine?limit=200${query}`, { token: ann.token })).body.alerts as {
        id: string;
        status: string;
        severity: string;
      }[];
    const active = await list('');
    expect(active.every((a) => a.status === 'active')).toBe(true);
    expect(active.map((a) => a.id)).toContain(later);
    expect(active.map((a) => a.id)).not.toContain(expired);
    expect(active.map((a) => a.id)).not.toContain(resolved);
    const onlyResolved = await list('&status=resolved');
    expect(onlyResolved.map((a) => a.id)).toContain(resolved);
    expect(onlyResolved.every((a) => a.status === 'resolved')).toBe(true);
    const criticals = await list('&severity=critical,high');
    expect(criticals.map((a) => a.id)).toContain(critical);
    expect(criticals.every((a) => ['critical', 'high'].includes(a.severity))).toBe(true);
  });

  it('pages newest first with an opaque cursor, ties broken by id', async () => {
    const pager = await createStaffUser(db, 'pager@example.com');
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      // Two alerts share each second but the last, so the cursor must order by id too.
      const second = Math.floor(i / 2);
      ids.push(
        await insertAlert({
          title: `page ${i}`,
          to: [{ type: 'user', id: pager.id }],
          createdDate: `2030-01-01T00:00:0${second}.123456Z`,
        }),
      );
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const answer: Answer = await call(
        'GET',
        `/api/alerts/mine?limit=3${cursor ? `&cursor=${cursor}` : ''}`,
        { token: pager.token },
      );
      expect(answer.status).toBe(200);
      seen.push(...(answer.body.alerts as { id: string }[]).map((a) => a.id));
      cursor = answer.body.next_cursor as string | null;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toHaveLength(7);
    expect(new Set(seen).size).toBe(7);
    const expected = await db.query<{ id: string }>(
      `select a.id from workflow.alerts a join workflow.alert_recipients r on r.alert_id = a.id
        where r.recipient_id = $1 order by a.created_date desc, a.id desc`,
      [pager.id],
    );
    expect(seen).toEqual(expected.map((row) => row.id));
  });

  it('names the bad query parameter', async () => {
    const bad = async (query: string) => call('GET', `/api/alerts/mine?${query}`, { token: ann.token });
    for (const [query, pattern] of [
      ['limit=0', /"limit" must be a whole number from 1 to 200/],
      ['limit=201', /"limit"/],
      ['limit=ten', /"limit"/],
      ['status=open', /"status" has an unknown value "open"/],
      ['severity=urgent', /"severity" has an unknown value "urgent"/],
      ['cursor=not-a-cursor', /"cursor"/],
      ['colour=red', /unknown query parameter "colour"/],
      ['limit=1&limit=2', /"limit" is given twice/],
    ] as const) {
      const answer = await bad(query);
      expect(answer.status, query).toBe(400);
      expect(answer.body.error, query).toMatch(pattern);
    }
  });
});

describe('GET /api/alerts/:id', () => {
  it('gives one alert with its recipients and acknowledgments', async () => {
    const id = await insertAlert({ title: 'detailed', to: [...toAnn(), ...toOps()] });
    const answer = await call('GET', `/api/alerts/${id}`, { token: ann.token });
    expect(answer.status).toBe(200);
    const alert = answer.body.alert as Record<string, unknown>;
    expect(alert).toMatchObject({ id, title: 'detailed', status: 'active', context: { order: 7 } });
    expect(alert.recipients).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ recipient_type: 'user', recipient_id: ann.id, name: 'Ann' }),
        expect.objectContaining({ recipient_type: 'role', recipient_id: opsRole, name: 'ops' }),
      ]),
    );
    expect(alert.acknowledgments).toEqual([]);
  });

  it("answers 404 for someone else's alert, exactly as for a missing one", async () => {
    const id = await insertAlert({ title: 'private', to: toBob() });
    const hidden = await call('GET', `/api/alerts/${id}`, { token: ann.token });
    const missing = await call('GET', `/api/alerts/${randomUUID()}`, { token: ann.token });
    expect(hidden.status).toBe(404);
    expect(missing.status).toBe(404);
    expect(hidden.body.error).toBe((missing.body.error as string).replace(/[0-9a-f-]{36}/, id));
    expect((await call('GET', '/api/alerts/not-a-uuid', { token: ann.token })).status).toBe(404);
  });
});

describe('acknowledging and dismissing', () => {
  it('acknowledges with notes, once', async () => {
    const id = await insertAlert({ title: 'ack me', to: toOps() });
    const first = await call('POST', `/api/alerts/${id}/acknowledge`, {
      token: ann.token,
      body: { notes: 'on it' },
    });
    expect(first.status).toBe(200);
    expect(first.body.alert).toMatchObject({
      id,
      status: 'acknowledged',
      acknowledged_by: { id: ann.id, name: 'Ann' },
    });
    expect((first.body.alert as { acknowledgments: unknown[] }).acknowledgments).toEqual([
      expect.objectContaining({ acknowledged_by: ann.id, notes: 'on it' }),
    ]);
    const second = await call('POST', `/api/alerts/${id}/acknowledge`, {
      token: ann.token,
      body: { notes: 'again' },
    });
    expect(second.status).toBe(409);
    expect(second.body.error).toMatch(/already acknowledged by Ann/);
    expect(await acknowledgments(id)).toEqual([{ acknowledged_by: ann.id, notes: 'on it' }]);
    expect(await statusOf(id)).toBe('acknowledged');
  });

  it('writes one acknowledgment when two arrive at once', async () => {
    const id = await insertAlert({ title: 'race', to: toAnn() });
    const answers = await Promise.all(
      [1, 2, 3, 4].map((n) =>
        call('POST', `/api/alerts/${id}/acknowledge`, { token: ann.token, body: { notes: `try ${n}` } }),
      ),
    );
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409, 409, 409]);
    expect(await acknowledgments(id)).toHaveLength(1);
  });

  it('acknowledges without a body, stamping acknowledged_date', async () => {
    const id = await insertAlert({ title: 'no notes', to: toAnn() });
    expect((await call('POST', `/api/alerts/${id}/acknowledge`, { token: ann.token })).status).toBe(200);
    const [row] = await db.query<{ notes: string | null; fresh: boolean }>(
      `select notes, acknowledged_date > now()::timestamp - interval '1 minute' as fresh
         from workflow.alert_acknowledgments where alert_id = $1`,
      [id],
    );
    expect(row).toEqual({ notes: null, fresh: true });
  });

  it("cannot touch someone else's alert", async () => {
    const id = await insertAlert({ title: "Bob's", to: toBob() });
    expect((await call('POST', `/api/alerts/${id}/acknowledge`, { token: ann.token })).status).toBe(404);
    expect((await call('POST', `/api/alerts/${id}/dismiss`, { token: ann.token })).status).toBe(404);
    expect(await acknowledgments(id)).toEqual([]);
    expect(await statusOf(id)).toBe('active');
  });

  it('dismisses active and acknowledged alerts, and refuses dismissed or resolved ones', async () => {
    const active = await insertAlert({ to: toAnn() });
    const acknowledged = await insertAlert({ to: toAnn(), status: 'acknowledged' });
    const resolved = await insertAlert({ to: toAnn(), status: 'resolved' });
    for (const id of [active, acknowledged]) {
      const answer = await call('POST', `/api/alerts/${id}/dismiss`, { token: ann.token });
      expect(answer.status).toBe(200);
      expect(answer.body.alert).toMatchObject({ id, status: 'dismissed' });
    }
    const again = await call('POST', `/api/alerts/${active}/dismiss`, { token: ann.token });
    expect(again.status).toBe(409);
    expect(again.body.error).toMatch(/already|dismissed/);
    const onResolved = await call('POST', `/api/alerts/${resolved}/dismiss`, { token: ann.token });
    expect(onResolved.status).toBe(409);
    expect(onResolved.body.error).toMatch(/resolved/);
    const ackDismissed = await call('POST', `/api/alerts/${active}/acknowledge`, { token: ann.token });
    expect(ackDismissed.status).toBe(409);
    expect(ackDismissed.body.error).toMatch(/dismissed/);
  });

  it('notifies rulebook_alerts for every change while an alert stream is open, and only then', async () => {
    const id = await insertAlert({ to: toAnn() });
    await db.withClient(async (client) => {
      const heard: string[] = [];
      client.on('notification', (message) => {
        if (message.channel === 'rulebook_alerts' && message.payload) heard.push(message.payload);
      });
      await client.query('listen rulebook_alerts');
      // No stream open: the acknowledgment sends nothing (notifications arrive in commit order, so
      // the marker sent after it arrives after whatever it sent).
      await call('POST', `/api/alerts/${id}/acknowledge`, { token: ann.token });
      await client.query(`select pg_notify('rulebook_alerts', 'marker')`);
      await waitFor('the marker', () => heard.includes('marker'));
      expect(heard).not.toContain(id);
      const stream = await openSse(`${base}/api/alerts/stream`, { authorization: `Bearer ${ann.token}` });
      try {
        await call('POST', `/api/alerts/${id}/dismiss`, { token: ann.token });
        await waitFor('the notification', () => heard.includes(id));
        await stream.next((e) => e.event === 'alert' && e.data.includes('"dismissed"'));
      } finally {
        stream.close();
      }
      await client.query('unlisten rulebook_alerts');
      client.removeAllListeners('notification');
    });
  });

  it('validates bodies', async () => {
    const id = await insertAlert({ to: toAnn() });
    const post = (options: Parameters<typeof call>[2]) =>
      call('POST', `/api/alerts/${id}/acknowledge`, { token: ann.token, ...options });
    const cases: [Parameters<typeof call>[2], number, RegExp][] = [
      [{ body: { notes: 42 } }, 400, /"notes" must be a string, got a number/],
      [{ body: { notes: 'x'.repeat(2001) } }, 400, /"notes" is 2001 characters long; at most 2000/],
      [{ body: ['notes'] }, 400, /must be a JSON object, got an array/],
      [{ body: { note: 'typo' } }, 400, /unknown field "note"/],
      [{ raw: '{"notes": ', headers: { 'content-type': 'application/json' } }, 400, /not valid JSON/],
      [{ raw: 'notes=hi', headers: { 'content-type': 'text/plain' } }, 415, /application\/json/],
      [{ body: { notes: 'y'.repeat(70_000) } }, 413, /larger than 64 KiB/],
    ];
    for (const [options, status, pattern] of cases) {
      const answer = await post(options);
      expect(answer.status, JSON.stringify(options).slice(0, 60)).toBe(status);
      expect(answer.body.error).toMatch(pattern);
    }
    expect(await acknowledgments(id)).toEqual([]);
    expect((await post({ body: { notes: 'x'.repeat(2000) } })).status).toBe(200);
  });
});

describe('bulk actions', () => {
  it('acknowledges a list of ids with a result for each', async () => {
    const active = await insertAlert({ to: toOps() });
    const acknowledged = await insertAlert({ to: toAnn(), status: 'acknowledged' });
    const dismissed = await insertAlert({ to: toAnn(), status: 'dismissed' });
    const resolved = await insertAlert({ to: toAnn(), status: 'resolved' });
    const bobs = await insertAlert({ to: toBob() });
    const nowhere = randomUUID();
    const answer = await call('POST', '/api/alerts/acknowledge', {
      token: ann.token,
      body: { ids: [active, acknowledged, dismissed, resolved, bobs, nowhere, active], notes: 'bulk' },
    });
    expect(answer.status).toBe(200);
    expect(answer.body.results).toEqual([
      { id: active, status: 'acknowledged' },
      { id: acknowledged, status: 'already_acknowledged' },
      { id: dismissed, status: 'already_dismissed' },
      { id: resolved, status: 'already_resolved' },
      { id: bobs, status: 'not_found' },
      { id: nowhere, status: 'not_found' },
    ]);
    expect(await acknowledgments(active)).toEqual([{ acknowledged_by: ann.id, notes: 'bulk' }]);
    expect(await acknowledgments(acknowledged)).toEqual([]);
    expect(await statusOf(bobs)).toBe('active');
  });

  it('acknowledges and dismisses all of the caller\'s alerts with { "all": true }', async () => {
    const dana = await createStaffUser(db, 'dana@example.com', { roles: ['night'] });
    const night = await roleId(db, 'night');
    const mine = [
      await insertAlert({ to: [{ type: 'user', id: dana.id }] }),
      await insertAlert({ to: [{ type: 'role', id: night }] }),
    ];
    const expired = await insertAlert({
      to: [{ type: 'user', id: dana.id }],
      expiresDate: '2000-01-01T00:00:00Z',
    });
    const others = await insertAlert({ to: toBob() });
    const acked = await call('POST', '/api/alerts/acknowledge', { token: dana.token, body: { all: true } });
    expect(acked.status).toBe(200);
    expect(
      (acked.body.results as { id: string; status: string }[]).sort((a, b) => a.id.localeCompare(b.id)),
    ).toEqual(mine.sort().map((id) => ({ id, status: 'acknowledged' })));
    expect(await statusOf(expired)).toBe('active');
    expect(await statusOf(others)).toBe('active');
    const again = await call('POST', '/api/alerts/acknowledge', { token: dana.token, body: { all: true } });
    expect(again.body.results).toEqual([]);

    const dismissed = await call('POST', '/api/alerts/dismiss', { token: dana.token, body: { all: true } });
    expect(dismissed.status).toBe(200);
    expect((dismissed.body.results as { status: string }[]).map((r) => r.status)).toEqual([
      'dismissed',
      'dismissed',
      'dismissed',
    ]);
    expect(await statusOf(others)).toBe('active');
  });

  it('dismisses a list of ids with a result for each', async () => {
    const active = await insertAlert({ to: toAnn() });
    const resolved = await insertAlert({ to: toAnn(), status: 'resolved' });
    const answer = await call('POST', '/api/alerts/dismiss', {
      token: ann.token,
      body: { ids: [active, resolved] },
    });
    expect(answer.body.results).toEqual([
      { id: active, status: 'dismissed' },
      { id: resolved, status: 'already_resolved' },
    ]);
    const again = await call('POST', '/api/alerts/dismiss', { token: ann.token, body: { ids: [active] } });
    expect(again.body.results).toEqual([{ id: active, status: 'already_dismissed' }]);
  });

  it('validates the target', async () => {
    for (const [body, pattern] of [
      [undefined, /needs a JSON object body/],
      [{}, /give "ids"/],
      [{ ids: [] }, /"ids" is empty/],
      [{ ids: 'abc' }, /"ids" must be an array/],
      [{ ids: [randomUUID(), 'nope'] }, /"ids\[1\]" is not an alert id/],
      [{ all: false }, /"all" must be true/],
      [{ all: true, ids: [randomUUID()] }, /either "ids" or "all"/],
      [{ ids: Array.from({ length: 501 }, () => randomUUID()) }, /at most 500/],
    ] as const) {
      const answer = await call('POST', '/api/alerts/acknowledge', { token: ann.token, body });
      expect(answer.status, JSON.stringify(body)?.slice(0, 60)).toBe(400);
      expect(answer.body.error).toMatch(pattern);
    }
    const dismissNotes = await call('POST', '/api/alerts/dismiss', {
      token: ann.token,
      body: { all: true, notes: 'no notes here' },
    });
    expect(dismissNotes.status).toBe(400);
    expect(dismissNotes.body.error).toMatch(/unknown field "notes"/);
  });
});

describe('GET /api/alerts/stream', () => {
  it('sends a new alert that the engine created from a database update, only to its recipients', async () => {
    await createRule(db, {
      name: 'Order needs review',
      entity: 'sales.orders',
      trigger: 'on_update',
      conditions: [{ field_name: 'status', operator: 'changed_to', value: 'review' }],
      actions: [
        {
          name: 'alert ops',
          config: {
            action_type: 'create_alert',
            severity: 'high',
            title: 'Order {{id}} needs review',
            message: 'It went from {{old.status}} to {{status}}',
            recipients: { roles: [opsRole] },
          },
        },
      ],
    });
    const [order] = await db.query<{ id: string }>(
      `insert into sales.orders (status) values ('new') returning id`,
    );
    const annStream = await openSse(`${base}/api/alerts/stream`, { authorization: `Bearer ${ann.token}` });
    // The page's way: EventSource cannot send headers.
    const bobStream = await openSse(`${base}/api/alerts/stream?access_token=${bob.token}`);
    try {
      expect(annStream.status).toBe(200);
      expect(bobStream.status).toBe(200);
      await db.query(`update sales.orders set status = 'review' where id = $1`, [order!.id]);
      const event = await annStream.next(
        (e) =>
          e.event === 'alert' &&
          (JSON.parse(e.data) as { title: string }).title === `Order ${order!.id} needs review`,
      );
      const alert = JSON.parse(event.data) as { id: string; severity: string; status: string };
      expect(alert).toMatchObject({ severity: 'high', status: 'active' });

      // A change through the API reaches the stream too.
      await call('POST', `/api/alerts/${alert.id}/acknowledge`, { token: ann.token });
      await annStream.next(
        (e) =>
          e.event === 'alert' &&
          (JSON.parse(e.data) as { id: string; status: string }).status === 'acknowledged',
      );

      // Bob is not in ops: his stream stays silent about it, but hears his own.
      const own = await insertAlert({ title: 'for Bob', to: toBob() });
      await db.query(`select pg_notify('rulebook_alerts', $1)`, [own]);
      await bobStream.next((e) => e.event === 'alert' && (JSON.parse(e.data) as { id: string }).id === own);
      expect(bobStream.events.some((e) => e.data.includes(alert.id))).toBe(false);
    } finally {
      annStream.close();
      bobStream.close();
    }
  });

  it('refuses a bad token and ends the stream when its token is revoked', async () => {
    const refused = await openSse(`${base}/api/alerts/stream?access_token=rbk_${'B'.repeat(43)}`);
    expect(refused.status).toBe(401);
    const token = await createToken(db.pool, { email: ann.email, expiresInMs: null });
    const stream = await openSse(`${base}/api/alerts/stream?access_token=${token.token}`);
    expect(stream.status).toBe(200);
    await revokeToken(db.pool, token.id);
    await stream.next((e) => e.event === 'signed-out', 5_000);
    await stream.ended;
  });
});

describe('the stream after its database connection drops', () => {
  it('tells pages to reload and carries on', async () => {
    const stream = await openSse(`${base}/api/alerts/stream`, { authorization: `Bearer ${ann.token}` });
    try {
      const [killed] = await db.query<{ count: number }>(
        `select count(pg_terminate_backend(pid))::int as count from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid()
            and application_name like 'rulebook-alert-stream %' and query ilike 'listen%rulebook_alerts%'`,
      );
      expect(killed!.count).toBe(1);
      await stream.next((e) => e.event === 'resync', 30_000);
      const id = await insertAlert({ title: 'after the reconnect', to: toAnn() });
      await db.query(`select pg_notify('rulebook_alerts', $1)`, [id]);
      await stream.next((e) => e.event === 'alert' && e.data.includes(id));
    } finally {
      stream.close();
    }
  });
});

describe('open streams', () => {
  it('are limited per person', async () => {
    const eve = await createStaffUser(db, 'eve@example.com');
    const streams = await Promise.all(
      Array.from({ length: 20 }, () => openSse(`${base}/api/alerts/stream?access_token=${eve.token}`)),
    );
    try {
      expect(streams.map((stream) => stream.status)).toEqual(Array(20).fill(200));
      const one = await call('GET', `/api/alerts/stream?access_token=${eve.token}`);
      expect(one.status).toBe(429);
      expect(one.body.error).toMatch(/already have 20 open alert streams/);
    } finally {
      for (const stream of streams) stream.close();
    }
    await waitFor('the streams to close', async () => {
      const again = await openSse(`${base}/api/alerts/stream?access_token=${eve.token}`);
      again.close();
      return again.status === 200;
    });
  });
});

describe('stopping the server', () => {
  it('ends open event streams instead of waiting for them', async () => {
    const own = await startHttp(db);
    const stream = await openSse(`${own.base}/api/alerts/stream`, { authorization: `Bearer ${ann.token}` });
    expect(stream.status).toBe(200);
    const started = Date.now();
    await own.server.stop();
    await stream.ended;
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('in-app notifications', () => {
  async function delivery(recipient: string, channel: string, title: string): Promise<string> {
    const notificationId = randomUUID();
    await db.query(`insert into workflow.notification_payloads (id, payload) values ($1, $2)`, [
      notificationId,
      JSON.stringify({
        kind: 'notification',
        title,
        body: `body of ${title}`,
        priority: 'high',
        addresses: { [bob.id]: 'bob@example.com' },
        rule: { id: randomUUID(), name: 'Stock check' },
      }),
    ]);
    const [row] = await db.query<{ id: string }>(
      `insert into workflow.notification_deliveries (notification_id, recipient_id, channel, status)
       values ($1, $2, $3, 'delivered') returning id`,
      [notificationId, recipient, channel],
    );
    return row!.id;
  }

  it("lists the caller's in_app deliveries with read state and marks them read", async () => {
    const first = await delivery(ann.id, 'in_app', 'first');
    const second = await delivery(ann.id, 'in_app', 'second');
    await delivery(ann.id, 'email', 'by mail');
    const bobs = await delivery(bob.id, 'in_app', "Bob's");

    const list = await call('GET', '/api/notifications/mine', { token: ann.token });
    expect(list.status).toBe(200);
    expect(list.body.unread_count).toBe(2);
    expect(list.body.notifications).toEqual([
      expect.objectContaining({ id: second, title: 'second', body: 'body of second', read_at: null }),
      expect.objectContaining({ id: first, title: 'first', body: 'body of first', read_at: null }),
    ]);
    expect((list.body.notifications as unknown[])[0]).toMatchObject({
      priority: 'high',
      rule_name: 'Stock check',
    });
    // The payload's other addresses stay on the server.
    expect(JSON.stringify(list.body)).not.toContain('bob@example.com');

    const read = await call('POST', `/api/notifications/${first}/read`, { token: ann.token });
    expect(read.status).toBe(200);
    expect(read.body.read_at).toEqual(expect.any(String));
    const again = await call('POST', `/api/notifications/${first}/read`, { token: ann.token });
    expect(again.body.read_at).toBe(read.body.read_at);

    const unread = await call('GET', '/api/notifications/mine?unread=true', { token: ann.token });
    expect((unread.body.notifications as { id: string }[]).map((n) => n.id)).toEqual([second]);
    expect(unread.body.unread_count).toBe(1);
    const paged = await call('GET', '/api/notifications/mine?limit=1', { token: ann.token });
    expect((paged.body.notifications as { id: string }[]).map((n) => n.id)).toEqual([second]);
    const rest = await call(
      'GET',
      `/api/notifications/mine?limit=1&cursor=${paged.body.next_cursor as string}`,
      {
        token: ann.token,
      },
    );
    expect((rest.body.notifications as { id: string }[]).map((n) => n.id)).toEqual([first]);

    expect((await call('POST', `/api/notifications/${bobs}/read`, { token: ann.token })).status).toBe(404);
    expect((await call('POST', `/api/notifications/nope/read`, { token: ann.token })).status).toBe(404);
    const [bobRead] = await db.query(`select 1 from workflow.notification_reads where delivery_id = $1`, [
      bobs,
    ]);
    expect(bobRead).toBeUndefined();
    const badQuery = await call('GET', '/api/notifications/mine?unread=maybe', { token: ann.token });
    expect(badQuery.status).toBe(400);
    expect(badQuery.body.error).toMatch(/"unread" must be true or false/);
  });
});

describe('failed sign-ins', () => {
  it('are limited per client address: 10 a minute, then 429 with Retry-After for failures', async () => {
    const limited = await startHttp(db);
    try {
      const attempt = (token: string) =>
        fetch(`${limited.base}/api/alerts/mine`, { headers: { authorization: `Bearer ${token}` } });
      // Requests without any token are not guesses and do not count.
      for (let i = 0; i < 12; i++) expect((await fetch(`${limited.base}/api/me`)).status).toBe(401);
      for (let i = 0; i < 10; i++)
        expect((await attempt(`rbk_${String(i).padStart(43, 'x')}`)).status).toBe(401);
      const blocked = await attempt(`rbk_${'y'.repeat(43)}`);
      expect(blocked.status).toBe(429);
      expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(50);
      expect(((await blocked.json()) as { error: string }).error).toMatch(/too many failed sign-ins/);
      // A good token is never refused: behind a proxy, one guesser would lock out every member of
      // staff (test/security/http-abuse.test.ts). Guessing a 256-bit token is hopeless anyway.
      expect((await attempt(ann.token)).status).toBe(200);
      expect((await attempt(`rbk_${'z'.repeat(43)}`)).status).toBe(429);
      // Other servers (and so the main one here) keep their own counts.
      expect((await call('GET', '/api/me', { token: ann.token })).status).toBe(200);
    } finally {
      await limited.server.stop();
    }
  });
});
