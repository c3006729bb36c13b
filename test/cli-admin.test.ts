import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ensureCliBuilt, spawnRulebook } from './support/daemon-process.js';
import { freePort } from './support/free-port.js';

// An administrator's story, through the built `rulebook` command: add a role and a person, issue
// them a token that the API accepts, list it, revoke it, and the API refuses it.

let db: TestDatabase;

beforeAll(async () => {
  ensureCliBuilt();
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

async function rulebook(
  ...args: string[]
): Promise<{ code: number | null; output: string; lines: string[] }> {
  const run = spawnRulebook(args, { DATABASE_URL: db.url, LOG_LEVEL: 'silent' });
  const { code } = await run.exited();
  const output = run.output();
  return { code, output, lines: output.trimEnd().split('\n') };
}

const TOKEN = /^rbk_[A-Za-z0-9_-]{43}$/;

describe('rulebook role add / user add', () => {
  it('adds a role, once', async () => {
    const added = await rulebook('role', 'add', 'ops');
    expect(added.code).toBe(0);
    expect(added.output).toMatch(/added role "ops"/);
    const again = await rulebook('role', 'add', 'ops');
    expect(again.code).toBe(1);
    expect(again.output).toMatch(/role "ops" already exists/);
    expect(await db.query(`select name from core.roles`)).toEqual([{ name: 'ops' }]);
  });

  it('adds a user with their role memberships', async () => {
    const added = await rulebook(
      'user',
      'add',
      '--email',
      'ann@example.com',
      '--name',
      'Ann Smith',
      '--role',
      'ops',
    );
    expect(added.code).toBe(0);
    expect(added.output).toMatch(/added user ann@example.com .* with role ops/);
    const rows = await db.query(
      `select u.email, u.name, r.name as role from core.users u
         join core.user_roles ur on ur.user_id = u.id join core.roles r on r.id = ur.role_id`,
    );
    expect(rows).toEqual([{ email: 'ann@example.com', name: 'Ann Smith', role: 'ops' }]);
  });

  it('refuses a role that does not exist, a duplicate e-mail and missing options', async () => {
    const noRole = await rulebook(
      'user',
      'add',
      '--email',
      'bob@example.com',
      '--name',
      'Bob',
      '--role',
      'night',
    );
    expect(noRole.code).toBe(1);
    expect(noRole.output).toMatch(
      /role "night" does not exist; create it first with `rulebook role add <name>`/,
    );
    expect(await db.query(`select 1 from core.users where email = 'bob@example.com'`)).toEqual([]);
    const duplicate = await rulebook('user', 'add', '--email=ann@example.com', '--name=Ann again');
    expect(duplicate.code).toBe(1);
    expect(duplicate.output).toMatch(/a user with e-mail ann@example.com already exists/);
    const missing = await rulebook('user', 'add', '--email', 'cy@example.com');
    expect(missing.code).toBe(2);
    expect(missing.output).toMatch(/user add needs --email and --name/);
    const unknown = await rulebook(
      'user',
      'add',
      '--email',
      'cy@example.com',
      '--name',
      'Cy',
      '--admin',
      'yes',
    );
    expect(unknown.code).toBe(2);
    expect(unknown.output).toMatch(/user add does not know --admin/);
    const badEmail = await rulebook('user', 'add', '--email', 'not-an-address', '--name', 'X');
    expect(badEmail.code).toBe(1);
    expect(badEmail.output).toMatch(/is not an e-mail address/);
  });
});

describe('rulebook token', () => {
  let tokenId: string;
  let token: string;

  it('creates a token and prints it as the last line, once', async () => {
    const created = await rulebook(
      'token',
      'create',
      '--user',
      'ann@example.com',
      '--name',
      'laptop',
      '--expires',
      '30d',
    );
    expect(created.code).toBe(0);
    token = created.lines[created.lines.length - 1]!;
    expect(token).toMatch(TOKEN);
    expect(created.output.split(token)).toHaveLength(2);
    tokenId = /token ([0-9a-f-]{36})/.exec(created.output)![1]!;
    const [row] = await db.query<{ name: string; days: number; token_hash: string }>(
      `select name, round(extract(epoch from expires_at - now()) / 86400)::int as days, token_hash
         from core.api_tokens where id = $1`,
      [tokenId],
    );
    expect(row).toMatchObject({ name: 'laptop', days: 30 });
    expect(row!.token_hash).not.toContain(token);
  });

  it('issues a token that works against the API of `rulebook start`', async () => {
    const port = await freePort();
    const daemon = spawnRulebook(['start'], { DATABASE_URL: db.url, PORT: String(port), LOG_LEVEL: 'info' });
    try {
      await daemon.waitForLog('http server listening');
      const me = await fetch(`http://127.0.0.1:${port}/api/me`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(me.status).toBe(200);
      expect(await me.json()).toMatchObject({ email: 'ann@example.com', name: 'Ann Smith', roles: ['ops'] });
      const mine = await fetch(`http://127.0.0.1:${port}/api/alerts/mine`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(mine.status).toBe(200);

      // Revoked from the command line while the server runs: refused at once.
      const revoked = await rulebook('token', 'revoke', tokenId);
      expect(revoked.code).toBe(0);
      expect(revoked.output).toMatch(new RegExp(`revoked token ${tokenId} "laptop" of ann@example.com`));
      const refused = await fetch(`http://127.0.0.1:${port}/api/me`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(refused.status).toBe(401);
      expect(((await refused.json()) as { error: string }).error).toMatch(/revoked/);
    } finally {
      daemon.child.kill('SIGTERM');
      expect((await daemon.exited()).code).toBe(0);
    }
  });

  it('lists tokens with their state, never the secrets', async () => {
    const second = await rulebook('token', 'create', '--user', 'ann@example.com', '--expires', 'never');
    expect(second.code).toBe(0);
    expect(second.output).toMatch(/never expires/);
    const secret = second.lines[second.lines.length - 1]!;
    const list = await rulebook('token', 'list');
    expect(list.code).toBe(0);
    expect(list.lines[0]).toMatch(/^ID\s+USER\s+NAME\s+STATE\s+CREATED\s+EXPIRES\s+LAST USED$/);
    expect(list.lines).toHaveLength(3);
    const laptop = list.lines.find((line) => line.startsWith(tokenId))!;
    expect(laptop).toMatch(/ann@example.com\s+laptop\s+revoked/);
    expect(list.lines.some((line) => /ann@example.com\s+-\s+active\s+\S+ \S+\s+-\s+-/.test(line))).toBe(true);
    expect(list.output).not.toContain(secret);
    expect(list.output).not.toContain(token);
    const forAnn = await rulebook('token', 'list', '--user', 'ann@example.com');
    expect(forAnn.lines).toHaveLength(3);

    // Revoking by the secret itself works too; revoking twice says so and changes nothing.
    const bySecret = await rulebook('token', 'revoke', secret);
    expect(bySecret.code).toBe(0);
    expect(bySecret.output).toMatch(/revoked token/);
    const twice = await rulebook('token', 'revoke', secret);
    expect(twice.code).toBe(0);
    expect(twice.output).toMatch(/was already revoked on/);
  });

  it('explains mistakes: exit 2 for usage, 1 for what the database says', async () => {
    const cases: [string[], number, RegExp][] = [
      [['token', 'create'], 2, /usage: rulebook token create --user <email>/],
      [
        ['token', 'create', '--user', 'ann@example.com', '--expires', '5 days'],
        2,
        /--expires takes a number and a unit/,
      ],
      [['token', 'create', '--user', 'ann@example.com', '--expires'], 2, /--expires needs a value/],
      [
        ['token', 'create', '--user', 'nobody@example.com'],
        1,
        /there is no user with e-mail nobody@example.com/,
      ],
      [['token', 'revoke'], 2, /usage: rulebook token revoke/],
      [['token', 'revoke', 'abc'], 2, /neither a token id \(a uuid\) nor a token/],
      [['token', 'revoke', '00000000-0000-4000-8000-000000000000'], 1, /there is no token 00000000-/],
      [
        ['token', 'list', '--user', 'nobody@example.com'],
        1,
        /there is no user with e-mail nobody@example.com/,
      ],
      [['token', 'rotate'], 2, /usage: rulebook token create/],
      [['role', 'add'], 2, /usage: rulebook role add <name>/],
    ];
    for (const [args, code, pattern] of cases) {
      const run = await rulebook(...args);
      expect(run.code, args.join(' ')).toBe(code);
      expect(run.output, args.join(' ')).toMatch(pattern);
    }
    await db.query(`update core.users set is_active = false where email = 'ann@example.com'`);
    const inactive = await rulebook('token', 'create', '--user', 'ann@example.com');
    expect(inactive.code).toBe(1);
    expect(inactive.output).toMatch(/deactivated/);
    await db.query(`update core.users set is_active = true where email = 'ann@example.com'`);
  });

  it('lists the commands in --help', async () => {
    const help = await rulebook('--help');
    for (const command of ['role add', 'user add', 'token create', 'token list', 'token revoke']) {
      expect(help.output).toContain(`rulebook ${command}`);
    }
  });
});
