/**
 * `npm run bench -- --only capture-cost`: what each part of the generated capture function costs the
 * writing backend (docs/capture-cost.md). pgbench figures move 20-40% between rounds on a shared
 * machine; the CPU time of the writer's backend (/proc/<pid>/schedstat) does not count time spent
 * waiting for a core, so it shows differences of a few microseconds.
 *
 * Each run: the variant's table reloaded from bench.seed (triggers off), vacuumed and analyzed, the
 * event tables truncated; then a new session runs N single-row UPDATEs, each its own transaction
 * (a procedure that COMMITs after every row; synchronous_commit off, since the flush is the same
 * for every variant and most of the noise), and, after another reload, one UPDATE of every row.
 * "Extra" is the variant's CPU minus that of the same writes to a table without a trigger in the
 * same round. Variants run in an order rotated each round; figures are medians over rounds.
 */
import { backendCpu } from './support/cpu.js';
import pg from 'pg';
import type { BenchContext, BenchSection } from './support/context.js';
import { markdownTable, median } from './support/report.js';
import { seedTableSql } from './support/seed-table.js';

const ROWS = 100_000;
const TOGGLE = `case when status = 'shipped' then 'paid' else 'shipped' end`;

const SETUP_SQL = `${seedTableSql(ROWS)}
create table bench.t_none (like bench.seed including all);
create table bench.t_hasura (like bench.seed including all);
create table bench.t_rulebook (like bench.seed including all);
create table bench.events_hasura (
  id bigserial primary key,
  table_name text not null,
  op text not null,
  payload jsonb not null,
  created_at timestamptz not null default now()
);
create function bench.capture_hasura() returns trigger language plpgsql as $$
begin
  insert into bench.events_hasura (table_name, op, payload)
  values (tg_table_schema || '.' || tg_table_name, tg_op,
          jsonb_build_object('old', to_jsonb(old), 'new', to_jsonb(new)));
  return null;
end
$$;
create trigger capture after insert or update or delete on bench.t_hasura
  for each row execute function bench.capture_hasura();
-- The wake-up check as it was before 000024, for the variant that measures it.
grant select on workflow.idle_daemons to rulebook_capture;
insert into core.users (email, name) values ('bench@example.com', 'bench');
${['none', 'hasura', 'rulebook']
  .map(
    (name) => `
create procedure bench.single_${name}(n int) language plpgsql as $$
begin
  for i in 1..n loop
    update bench.t_${name} set status = ${TOGGLE} where id = i;
    commit;
  end loop;
end $$;`,
  )
  .join('\n')}
`;

interface Variant {
  readonly name: string;
  readonly table: 'none' | 'hasura' | 'rulebook';
  /** The capture function's body, for the rulebook table. */
  readonly body?: string;
  /** Whether a daemon is registered as idle (a row of the control session's), so writers NOTIFY. */
  readonly daemonIdle?: boolean;
}

const DEPTH_GUARD = `case when pg_catalog.textregexeq(pg_catalog.current_setting('rulebook.depth', true), '^[0-9]{1,9}$')`;
const WAKE_CHECK_START = `  if pg_catalog.pg_sequence_last_value(`;
const COUNT_CHECK = `pg_catalog.pg_sequence_last_value('workflow.idle_daemons_count'::pg_catalog.regclass) operator(pg_catalog.>) 0`;
/** The wake-up check before 000024: once per transaction, remembered in a setting. */
const onceGuarded = (
  check: string,
): string => `  if pg_catalog.current_setting('rulebook.wake_checked', true) is null
     or pg_catalog.current_setting('rulebook.wake_checked', true) operator(pg_catalog.<>) 'on' then
    perform pg_catalog.set_config('rulebook.wake_checked', 'on', true);
    if ${check} then
      perform pg_catalog.pg_notify('rulebook_events', '');
    end if;
  end if;
`;

/** Today's generated body and the alternatives derived from it by textual edits. */
function variants(generated: string): Variant[] {
  const edit = (body: string, from: string, to: string): string => {
    if (!body.includes(from))
      throw new Error(`capture-cost bench: the generated capture function changed shape`);
    // A function, so that `$'` in the replacement (the regular expression's end) is taken as written.
    return body.replaceAll(from, () => to);
  };
  /** The wake-up block, from its guard to the function's RETURN, replaced by `to`. */
  const wake = (to: string): string => {
    const start = generated.indexOf(WAKE_CHECK_START);
    const end = generated.indexOf('  return null;', start);
    if (start < 0 || end < 0)
      throw new Error(`capture-cost bench: the generated capture function changed shape`);
    return generated.slice(0, start) + to + generated.slice(end);
  };
  return [
    { name: 'no trigger', table: 'none' },
    { name: 'Hasura-style (b)', table: 'hasura' },
    {
      name: 'before 000024: EXISTS on idle_daemons, once per transaction',
      table: 'rulebook',
      body: wake(onceGuarded('exists (select from workflow.idle_daemons)')),
    },
    {
      name: 'idle count, once per transaction',
      table: 'rulebook',
      body: wake(onceGuarded(COUNT_CHECK)),
    },
    { name: 'idle count, every row (000024)', table: 'rulebook', body: generated },
    {
      name: 'idle count, every row, a daemon idle (one NOTIFY per transaction)',
      table: 'rulebook',
      body: generated,
      daemonIdle: true,
    },
    { name: 'no wake-up check at all (for scale)', table: 'rulebook', body: wake('') },
    {
      name: 'idle count, depth setting read once when unset (no pg_has_role)',
      table: 'rulebook',
      body: edit(
        generated,
        DEPTH_GUARD,
        `case when pg_catalog.textregexeq(coalesce(pg_catalog.current_setting('rulebook.depth', true), ''), '^[0-9]{1,9}$')`,
      ),
    },
  ];
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const rounds = ctx.quick ? 1 : 5;
  const single = ctx.quick ? 1_000 : 5_000;
  const url = await ctx.createDatabase('bench_capture_cost');
  const control = new pg.Client({ connectionString: url });
  await control.connect();
  try {
    await control.query(SETUP_SQL);
    const [entity] = (
      await control.query<{ id: string }>(`select workflow.register_entity('bench.t_rulebook') as id`)
    ).rows;
    await control.query(
      `insert into workflow.automation_rules
         (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
       select 'shipped', e.id, e.entity_type_id, t.id, $2::jsonb, u.id, u.id
         from workflow.entities e, workflow.trigger_types t, core.users u where e.id = $1 and t.name = 'on_update'`,
      [entity!.id, JSON.stringify({ field_conditions: [{ field_name: 'status', operator: 'changed' }] })],
    );
    await control.query('delete from workflow.idle_daemons');
    const fn = `workflow.capture_${entity!.id.replaceAll('-', '')}`;
    const [{ prosrc }] = (
      await control.query<{ prosrc: string }>(`select prosrc from pg_proc where oid = $1::regprocedure`, [
        `${fn}()`,
      ])
    ).rows as [{ prosrc: string }];
    const all = variants(prosrc);
    const cpu = new Map(all.map((v) => [v.name, { single: [] as number[], bulk: [] as number[] }]));
    const reset = async (table: string) => {
      await control.query(`truncate workflow.events, bench.events_hasura, bench.t_${table}`);
      await control.query('set session_replication_role = replica');
      await control.query(`insert into bench.t_${table} select * from bench.seed`);
      await control.query('set session_replication_role = default');
      await control.query(
        `vacuum analyze bench.t_${table}, workflow.events, bench.events_hasura, workflow.idle_daemons`,
      );
    };
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < all.length; i++) {
        const variant = all[(i + round) % all.length]!;
        ctx.log(`capture-cost: round ${round + 1}/${rounds}, ${variant.name}`);
        if (variant.body !== undefined) {
          // CREATE OR REPLACE keeps the owner (rulebook_capture) and the grants.
          await control.query(
            `create or replace function ${fn}() returns trigger language plpgsql security definer as $body$${variant.body}$body$`,
          );
        }
        await reset(variant.table);
        if (variant.daemonIdle)
          await control.query(`insert into workflow.idle_daemons (daemon_id) values ('bench-idle')`);
        // A new session per run: plpgsql compiles the function anew, as after a rule change.
        const writer = new pg.Client({ connectionString: url });
        await writer.connect();
        try {
          const [{ pid }] = (await writer.query<{ pid: number }>('select pg_backend_pid() as pid')).rows as [
            { pid: number },
          ];
          await writer.query('set synchronous_commit = off');
          let start = backendCpu(pid);
          await writer.query(`call bench.single_${variant.table}($1)`, [single]);
          const singleSeconds = backendCpu(pid) - start;
          await reset(variant.table);
          start = backendCpu(pid);
          await writer.query(`update bench.t_${variant.table} set status = ${TOGGLE}`);
          const bulkSeconds = backendCpu(pid) - start;
          if (variant.table === 'rulebook') {
            const [{ n }] = (
              await control.query<{ n: number }>('select count(*)::int as n from workflow.events')
            ).rows as [{ n: number }];
            if (n !== ROWS)
              throw new Error(`capture-cost bench: ${variant.name} captured ${n} of ${ROWS} rows`);
          }
          await control.query('delete from workflow.idle_daemons');
          cpu.get(variant.name)!.single.push((singleSeconds * 1e6) / single);
          cpu.get(variant.name)!.bulk.push((bulkSeconds * 1e6) / ROWS);
        } finally {
          await writer.end();
        }
      }
    }
    const base = cpu.get(all[0]!.name)!;
    const extra = (values: number[], baseline: number[]) =>
      median(values.map((value, round) => value - baseline[round]!));
    const rows = all.map((variant) => {
      const r = cpu.get(variant.name)!;
      return [
        variant.name,
        median(r.single).toFixed(1),
        `+${extra(r.single, base.single).toFixed(1)}`,
        median(r.bulk).toFixed(1),
        `+${extra(r.bulk, base.bulk).toFixed(1)}`,
      ];
    });
    const table = markdownTable(
      [
        'variant',
        'single-row UPDATE transaction, us CPU',
        'extra',
        '100,000-row UPDATE, us CPU/row',
        'extra',
      ],
      rows,
      ['left', 'right', 'right', 'right', 'right'],
    );
    return {
      title: 'Capture cost: CPU of the writing backend per captured row',
      markdown: `${table}\n\nMedians of ${rounds} rounds (variants rotated each round; "extra" is the median of each round's difference to the table without a trigger); ${single.toLocaleString('en-US')} single-row UPDATEs each committed (synchronous_commit off), and one UPDATE of ${ROWS.toLocaleString('en-US')} rows; no daemon idle (so no NOTIFY) except where it says so.`,
    };
  } finally {
    await control.end();
  }
}
