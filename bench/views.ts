import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { pollViews, type ViewPollResult } from '../src/views/view-poller.js';
import type { BenchContext, BenchSection } from './support/context.js';
import { formatInt, formatPercent, markdownTable, median } from './support/report.js';

/**
 * Views that fire like tables (docs/views.md): a 100,000-row view over bench.items, registered with
 * key column id and watched by an on_create, an on_update and an on_delete rule.
 *
 * - Poll time: the first poll (snapshot of every row), a poll with nothing changed, and polls after
 *   1% of the rows changed (1,000 single-row updates between polls), each timed from node-postgres
 *   including commit.
 * - Snapshot layout: the diff rulebook runs (the view's rows compared with the stored rows as
 *   jsonb) against the alternative of storing a hash next to the row and comparing hashes, both
 *   as read-only queries over the same 100,000 rows.
 * - What a writer pays: one session's single-row updates of bench.items, in autocommit, for a fixed
 *   time, without and with another session polling the view back to back, alternated.
 */

const ROWS = 100_000;
const CHANGED = ROWS / 100;
const DATABASE = 'bench_views';

async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await work();
  return { ms: performance.now() - started, value };
}

async function setUp(client: pg.Client): Promise<void> {
  await client.query(`create schema bench`);
  await client.query(
    `create table bench.items (
       id int primary key, category int not null, status text not null, amount numeric(12, 2) not null,
       updated_at timestamptz not null default now())`,
  );
  await client.query(
    `insert into bench.items (id, category, status, amount)
     select i, i % 50, 'open', (i % 1000) + 0.5 from generate_series(1, $1) i`,
    [ROWS],
  );
  await client.query(`vacuum analyze bench.items`);
  await client.query(
    `create view bench.open_items as
       select id, category, status, amount, updated_at from bench.items where status <> 'closed'`,
  );
  const { rows } = await client.query<{ id: string }>(
    `insert into core.users (email, name) values ('bench@example.com', 'Bench') returning id`,
  );
  const entity = (
    await client.query<{ id: string }>(
      `select workflow.register_view('bench.open_items', '{id}', '1 hour') as id`,
    )
  ).rows[0]!.id;
  for (const trigger of ['on_create', 'on_update', 'on_delete']) {
    await client.query(
      `insert into workflow.automation_rules
         (name, entity_id, entity_type_id, trigger_type_id, created_by, updated_by)
       select $1, e.id, e.entity_type_id, t.id, $2, $2
         from workflow.entities e, workflow.trigger_types t where e.id = $3 and t.name = $4`,
      [`bench ${trigger}`, rows[0]!.id, entity, trigger],
    );
  }
}

/** Changes CHANGED rows, spread over the table, one autocommit statement each as an application would. */
async function changeRows(client: pg.Client, round: number): Promise<void> {
  const step = ROWS / CHANGED;
  for (let i = 0; i < CHANGED; i++) {
    const id = i * step + 1 + (round % step);
    await client.query(`update bench.items set amount = amount + 1, updated_at = now() where id = $1`, [id]);
  }
}

async function pollOnce(pool: pg.Pool): Promise<ViewPollResult> {
  const results = await pollViews(pool, { force: true });
  if (results.length !== 1) throw new Error(`expected one polled view, got ${results.length}`);
  return results[0]!;
}

const DIFF_AS_JSONB = `
with cur as (select jsonb_build_object('id', v.id) as row_key, to_jsonb(v) as row from bench.open_items v)
select count(*) from cur c
  full join (select row_key, row from workflow.view_snapshots where entity_id = $1) o on o.row_key = c.row_key
 where c.row is distinct from o.row`;

const DIFF_AS_HASH = `
with cur as (
  select jsonb_build_object('id', v.id) as row_key, md5(to_jsonb(v)::text) as row_hash from bench.open_items v
)
select count(*) from cur c
  full join (select row_key, row_hash from bench.snapshot_hashes) o on o.row_key = c.row_key
 where c.row_hash is distinct from o.row_hash`;

/** Single-row updates from one session for `ms` (each changes a row of the view); returns updates per second. */
async function writerLoop(client: pg.Client, ms: number): Promise<number> {
  const deadline = performance.now() + ms;
  let done = 0;
  let id = 1;
  const started = performance.now();
  while (performance.now() < deadline) {
    await client.query(`update bench.items set updated_at = now() where id = $1`, [id]);
    id = (id % ROWS) + 1;
    done++;
  }
  return done / ((performance.now() - started) / 1000);
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const url = await ctx.createDatabase(DATABASE);
  const client = new pg.Client({ connectionString: url });
  const writer = new pg.Client({ connectionString: url });
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  await client.connect();
  await writer.connect();
  try {
    ctx.log(`views: ${formatInt(ROWS)}-row view`);
    await setUp(client);
    const entity = (await client.query<{ id: string }>(`select entity_id as id from workflow.view_entities`))
      .rows[0]!.id;

    const first = await timed(() => pollOnce(pool));
    if (first.value.status !== 'snapshot') throw new Error(`first poll: ${JSON.stringify(first.value)}`);
    const unchanged: number[] = [];
    const changed: number[] = [];
    const rounds = ctx.quick ? 2 : 5;
    for (let round = 0; round < rounds; round++) {
      const idle = await timed(() => pollOnce(pool));
      if (idle.value.fired !== 0)
        throw new Error(`poll without changes fired: ${JSON.stringify(idle.value)}`);
      unchanged.push(idle.ms);
      await changeRows(client, round);
      const poll = await timed(() => pollOnce(pool));
      if (poll.value.updated !== CHANGED || poll.value.fired !== CHANGED) {
        throw new Error(`poll after ${CHANGED} changes: ${JSON.stringify(poll.value)}`);
      }
      changed.push(poll.ms);
      await client.query(`truncate workflow.events`);
    }
    const snapshotSize = (
      await client.query<{ size: string }>(
        `select pg_size_pretty(pg_total_relation_size('workflow.view_snapshots')) as size`,
      )
    ).rows[0]!.size;

    ctx.log('views: snapshot layouts');
    await client.query(
      `create table bench.snapshot_hashes as
         select row_key, md5(row::text) as row_hash, row from workflow.view_snapshots where entity_id = $1`,
      [entity],
    );
    await client.query(`alter table bench.snapshot_hashes add primary key (row_key)`);
    await client.query(`vacuum analyze bench.snapshot_hashes, workflow.view_snapshots`);
    await client.query(`update bench.items set amount = amount + 1 where id % 100 = 0`);
    const asJsonb: number[] = [];
    const asHash: number[] = [];
    for (let i = 0; i < (ctx.quick ? 1 : 3); i++) {
      asJsonb.push((await timed(() => client.query(DIFF_AS_JSONB, [entity]))).ms);
      asHash.push((await timed(() => client.query(DIFF_AS_HASH))).ms);
    }
    await pollOnce(pool);
    await client.query(`truncate workflow.events`);

    ctx.log('views: writer throughput without and with polling');
    const windowMs = ctx.quick ? 2_000 : 10_000;
    const without: number[] = [];
    const withPolling: number[] = [];
    let pollsDuringWrites = 0;
    for (let round = 0; round < (ctx.quick ? 1 : 3); round++) {
      without.push(await writerLoop(writer, windowMs));
      let polling = true;
      const poller = (async () => {
        while (polling) {
          await pollOnce(pool);
          pollsDuringWrites++;
        }
      })();
      withPolling.push(await writerLoop(writer, windowMs));
      polling = false;
      await poller;
      await client.query(`truncate workflow.events`);
    }
    const base = median(without);
    const polled = median(withPolling);

    const ms = (value: number) => `${formatInt(value)} ms`;
    const markdown = [
      `A view of ${formatInt(ROWS)} rows (\`bench.open_items\`, five columns, over \`bench.items\`), key column \`id\`, ` +
        `watched by one on_create, one on_update and one on_delete rule. Snapshot: ${snapshotSize} ` +
        '(`workflow.view_snapshots`, rows and key index).',
      '',
      '### Poll time (from node-postgres, including commit)',
      '',
      markdownTable(
        ['poll', 'time', 'runs'],
        [
          ['first (snapshot of every row, nothing fired)', ms(first.ms), '1'],
          ['nothing changed', ms(median(unchanged)), String(unchanged.length)],
          [
            `${formatInt(CHANGED)} rows (1%) changed: ${formatInt(CHANGED)} on_update events`,
            ms(median(changed)),
            String(changed.length),
          ],
        ],
        ['left', 'right', 'right'],
      ),
      '',
      '### Snapshot layout: the diff as a read-only query (median)',
      '',
      markdownTable(
        ['stored', 'compared', 'time'],
        [
          ['row (jsonb), as rulebook does', 'jsonb rows', ms(median(asJsonb))],
          [
            'md5 hash of the row, and the row',
            'hashes (md5 of each view row computed per poll)',
            ms(median(asHash)),
          ],
        ],
        ['left', 'left', 'right'],
      ),
      '',
      '### What a writer to the underlying table pays',
      '',
      `One session's single-row autocommit updates of \`bench.items\`, ${windowMs / 1000} s windows, ` +
        `alternated without and with a second session polling the view back to back ` +
        `(${formatInt(pollsDuringWrites)} polls in all); medians of ${without.length}.`,
      '',
      markdownTable(
        ['writer', 'updates/s', 'vs without'],
        [
          ['without polling', formatInt(base), '100.0%'],
          ['while polling back to back', formatInt(polled), formatPercent(polled / base)],
        ],
        ['left', 'right', 'right'],
      ),
      '',
      'A view has no triggers, so a write to its tables runs no rulebook code: what remains is the ' +
        "machine's shared CPU and I/O, and a poll takes no lock a writer waits for (it reads).",
    ].join('\n');
    return { title: 'Views that fire like tables: poll time and what a writer pays', markdown };
  } finally {
    await pool.end();
    await writer.end();
    await client.end();
  }
}
