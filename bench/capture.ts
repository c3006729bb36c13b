import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import type { BenchContext, BenchSection } from './support/context.js';
import { startDrainer, type Drainer, type DrainerStats } from './support/drainer.js';
import { runPgbench } from './support/pgbench.js';
import { seedTableSql } from './support/seed-table.js';
import {
  formatInt,
  formatPercent,
  formatRatio,
  formatSeconds,
  formatTps,
  markdownTable,
  median,
} from './support/report.js';

/**
 * What change capture costs a writer. Four identical tables that differ only in how their changes
 * are captured take the same writes, interleaved, and every figure is compared with the table
 * without any trigger measured in the same round.
 */

type Variant = 'base' | 'b' | 'c' | 'rulebook';

const VARIANTS: readonly Variant[] = ['base', 'b', 'c', 'rulebook'];

const LABEL: Record<Variant, string> = {
  base: 'no trigger',
  b: '(b) Hasura-style',
  c: '(c) (b) + pg_notify',
  rulebook: 'rulebook',
};

const ROWS = 100_000;
const DATABASE = 'bench_capture';

const tableOf = (variant: Variant) => `bench.t_${variant}`;

const EVENT_TABLE: Record<Variant, string | undefined> = {
  base: undefined,
  b: 'bench.events_b',
  c: 'bench.events_c',
  rulebook: 'workflow.events',
};

const TOGGLE_STATUS = `case when status = 'shipped' then 'pending' else 'shipped' end`;

type Script = 'update_status' | 'insert' | 'update_notes';

function scriptText(script: Script, table: string): string {
  switch (script) {
    case 'update_status':
      // Every update really changes status, so every one is captured by rulebook's filter.
      return `\\set id random(1, ${ROWS})\nupdate ${table} set status = ${TOGGLE_STATUS} where id = :id;\n`;
    case 'update_notes':
      return (
        `\\set id random(1, ${ROWS})\n\\set r random(1, 1000000000)\n` +
        `update ${table} set notes = 'note ' || :r where id = :id;\n`
      );
    case 'insert':
      return (
        `\\set amount random(100, 1000000)\n\\set customer random(1, 1000)\n` +
        `insert into ${table} (id, customer_id, status, amount, notes) ` +
        `values (nextval('bench.insert_ids'), :customer, 'new', :amount / 100.0, 'inserted by pgbench');\n`
      );
  }
}

interface Workload {
  readonly key: string;
  readonly label: string;
  readonly clients: number;
  readonly script: Script;
  readonly variants: readonly Variant[];
  /** Run a daemon draining the outbox while pgbench writes. */
  readonly drain?: boolean;
  /** rulebook's target, as a ratio to the table without a trigger. */
  readonly target?: number;
  /** Whether rulebook's rules make it capture these writes (for the sanity check). */
  readonly rulebookCaptures: boolean;
}

const WORKLOADS: readonly Workload[] = [
  {
    key: 'update-1',
    label: 'UPDATE status (relevant)',
    clients: 1,
    script: 'update_status',
    variants: VARIANTS,
    rulebookCaptures: true,
  },
  {
    key: 'update-16',
    label: 'UPDATE status (relevant)',
    clients: 16,
    script: 'update_status',
    variants: VARIANTS,
    target: 0.75,
    rulebookCaptures: true,
  },
  {
    key: 'insert-1',
    label: 'INSERT',
    clients: 1,
    script: 'insert',
    variants: VARIANTS,
    rulebookCaptures: true,
  },
  {
    key: 'insert-16',
    label: 'INSERT',
    clients: 16,
    script: 'insert',
    variants: VARIANTS,
    target: 0.75,
    rulebookCaptures: true,
  },
  {
    key: 'notes-16',
    label: 'UPDATE notes (irrelevant: no rule watches it)',
    clients: 16,
    script: 'update_notes',
    variants: VARIANTS,
    target: 0.95,
    rulebookCaptures: false,
  },
  {
    key: 'drain-16',
    label: 'UPDATE status while a daemon drains the outbox',
    clients: 16,
    script: 'update_status',
    variants: ['base', 'c', 'rulebook'],
    drain: true,
    target: 0.6,
    rulebookCaptures: true,
  },
];

interface PgbenchRun {
  readonly workload: Workload;
  readonly round: number;
  readonly variant: Variant;
  readonly tps: number;
  readonly transactions: number;
  /** Rows the variant's capture wrote to its event table during the run. */
  readonly events: number;
  readonly drainer?: DrainerStats & { readonly left: number };
}

type BulkOp = 'update' | 'insert';

interface BulkRun {
  readonly op: BulkOp;
  /** The repetition, counted like a round. */
  readonly round: number;
  readonly variant: Variant;
  readonly seconds: number;
  readonly events: number;
}

const BULK_SQL: Record<BulkOp, (table: string) => string> = {
  update: (table) => `update ${table} set status = ${TOGGLE_STATUS}`,
  insert: (table) =>
    `insert into ${table} (id, customer_id, status, amount, notes) ` +
    `select g, g % 1000, 'new', (g % 10000) / 100.0, 'bulk ' || g from generate_series(${ROWS + 1}, ${2 * ROWS}) g`,
};

const SETUP_SQL = `${seedTableSql(ROWS)}
create table bench.t_base (like bench.seed including all);
create table bench.t_b (like bench.seed including all);
create table bench.t_c (like bench.seed including all);
create table bench.t_rulebook (like bench.seed including all);

-- (b) and (c): what Hasura-style event triggers do, one event row per changed row, whatever changed.
create table bench.events_b (
  id bigserial primary key,
  table_name text not null,
  op text not null,
  payload jsonb not null,
  created_at timestamptz not null default now()
);
create table bench.events_c (
  id bigserial primary key,
  table_name text not null,
  op text not null,
  payload jsonb not null,
  created_at timestamptz not null default now()
);

create function bench.capture_b() returns trigger language plpgsql as $$
begin
  insert into bench.events_b (table_name, op, payload)
  values (tg_table_schema || '.' || tg_table_name, tg_op,
          jsonb_build_object('old', to_jsonb(old), 'new', to_jsonb(new)));
  return null;
end
$$;

create function bench.capture_c() returns trigger language plpgsql as $$
begin
  insert into bench.events_c (table_name, op, payload)
  values (tg_table_schema || '.' || tg_table_name, tg_op,
          jsonb_build_object('old', to_jsonb(old), 'new', to_jsonb(new)));
  perform pg_notify('events', '');
  return null;
end
$$;

create trigger capture after insert or update or delete on bench.t_b
  for each row execute function bench.capture_b();
create trigger capture after insert or update or delete on bench.t_c
  for each row execute function bench.capture_c();
`;

const RULES = [
  {
    name: 'bench: order shipped',
    trigger: 'on_update',
    conditions: { field_conditions: [{ field_name: 'status', operator: 'changed_to', value: 'shipped' }] },
  },
  {
    name: 'bench: order created',
    trigger: 'on_create',
    conditions: { field_conditions: [{ field_name: 'status', operator: 'equals', value: 'new' }] },
  },
];

/** The same list, starting at a different place each round, so that no variant always runs first. */
function rotate<T>(items: readonly T[], by: number): T[] {
  return items.map((_, i) => items[(i + by) % items.length]!);
}

/** Median over rounds of each round's ratio: pairs a figure with the baseline measured next to it. */
function pairedRatio<R extends { variant: Variant; round: number }>(
  runs: readonly R[],
  variant: Variant,
  key: (run: R) => number,
  ratio: (value: number, base: number) => number,
): number {
  const rounds = new Map<number, { base?: number; value?: number }>();
  for (const run of runs) {
    const entry = rounds.get(run.round) ?? {};
    if (run.variant === 'base') entry.base = key(run);
    if (run.variant === variant) entry.value = key(run);
    rounds.set(run.round, entry);
  }
  const ratios = [...rounds.values()]
    .filter((entry) => entry.base !== undefined && entry.value !== undefined)
    .map((entry) => ratio(entry.value!, entry.base!));
  return median(ratios);
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function verdict(ok: boolean): string {
  return ok ? 'PASS' : 'MISS';
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const rounds = ctx.quick ? 1 : 3;
  const seconds = ctx.quick ? 2 : 8;
  const bulkReps = ctx.quick ? 1 : 3;
  const started = performance.now();

  const url = await ctx.createDatabase(DATABASE);
  const scriptDir = path.join(ctx.tmpDir, 'capture');
  fs.mkdirSync(scriptDir, { recursive: true });

  const control = new pg.Client({ connectionString: url, application_name: 'bench control' });
  const writer = new pg.Client({ connectionString: url, application_name: 'bench bulk writer' });
  // (c) is realistic only with someone listening: NOTIFY with a listener on the channel makes the
  // listener's backend read the queue.
  const listener = new pg.Client({ connectionString: url, application_name: 'bench listener (c)' });
  let listened = 0;
  listener.on('notification', () => (listened += 1));
  let drainer: Drainer | undefined;
  try {
    await control.connect();
    await writer.connect();
    await listener.connect();
    await listener.query('listen events');

    ctx.log('capture: creating the tables and rulebook rules');
    const setup = await setUp(control);

    const query = async (text: string, values?: unknown[]) => (await control.query(text, values)).rows;
    const count = async (variant: Variant): Promise<number> => {
      const table = EVENT_TABLE[variant];
      if (!table) return 0;
      return Number((await query(`select count(*) as n from ${table}`))[0]!.n);
    };
    /** Identical starting point for every run: the table reloaded, outboxes empty, a checkpoint. */
    const prepare = async (variant: Variant) => {
      const table = tableOf(variant);
      await query('set session_replication_role = replica'); // no capture triggers while reloading
      try {
        await query(`truncate ${table}`);
        await query(`insert into ${table} select * from bench.seed`);
      } finally {
        await query('reset session_replication_role');
      }
      await query(`vacuum (analyze) ${table}`);
      await query('truncate bench.events_b, bench.events_c, workflow.events');
      await query('delete from workflow.idle_daemons');
      await query('alter sequence bench.insert_ids restart');
      await query('checkpoint');
    };

    const scriptPath = (script: Script, variant: Variant) => {
      const file = path.join(scriptDir, `${script}-${variant}.sql`);
      if (!fs.existsSync(file)) fs.writeFileSync(file, scriptText(script, tableOf(variant)));
      return file;
    };

    const pgbenchRuns: PgbenchRun[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const workload of WORKLOADS) {
        for (const variant of rotate(workload.variants, round)) {
          await prepare(variant);
          if (workload.drain && variant !== 'base') {
            drainer = await startDrainer(
              variant === 'rulebook'
                ? { url, daemonId: 'bench-drainer' }
                : {
                    url,
                    daemonId: 'bench-drainer-c',
                    channel: 'events',
                    registerIdle: false,
                    deleteSql:
                      'delete from bench.events_c where id in (select id from bench.events_c order by id ' +
                      'limit 500 for update skip locked) returning id',
                  },
            );
          }
          const result = await runPgbench({
            pgbench: ctx.pgbench,
            url,
            scriptPath: scriptPath(workload.script, variant),
            clients: workload.clients,
            seconds,
          });
          let drained: PgbenchRun['drainer'];
          if (drainer) {
            const stats = await drainer.stop();
            drainer = undefined;
            drained = { ...stats, left: await count(variant) };
          }
          const events = drained ? drained.drained + drained.left : await count(variant);
          pgbenchRuns.push({ workload, round, variant, ...result, events, drainer: drained });
          ctx.log(
            `capture: round ${round + 1}/${rounds} ${workload.key} ${variant}: ${formatTps(result.tps)}, ` +
              `${formatInt(events)} events` +
              (drained ? `, ${formatInt(drained.notifications)} notifications to the drainer` : ''),
          );
        }
      }
    }

    const bulkRuns: BulkRun[] = [];
    for (let rep = 0; rep < bulkReps; rep++) {
      for (const variant of rotate(VARIANTS, rep)) {
        for (const op of ['update', 'insert'] as const) {
          await prepare(variant);
          const start = performance.now();
          await writer.query(BULK_SQL[op](tableOf(variant)));
          const elapsed = (performance.now() - start) / 1000;
          const events = await count(variant);
          bulkRuns.push({ op, round: rep, variant, seconds: elapsed, events });
          ctx.log(
            `capture: bulk ${rep + 1}/${bulkReps} ${op} ${variant}: ${formatSeconds(elapsed)}, ${formatInt(events)} events`,
          );
        }
      }
    }

    const minutes = (performance.now() - started) / 60_000;
    return {
      title: 'Change capture: what a write pays',
      markdown: report({ rounds, seconds, bulkReps, minutes, setup, pgbenchRuns, bulkRuns, listened }),
    };
  } finally {
    if (drainer) await drainer.stop().catch(() => {});
    await Promise.allSettled([control.end(), writer.end(), listener.end()]);
  }
}

interface Setup {
  /** The bodies of rulebook's generated capture filters for bench.t_rulebook. */
  readonly filters: Record<string, string>;
  readonly settings: string;
}

async function setUp(control: pg.Client): Promise<Setup> {
  await control.query(SETUP_SQL);
  const [user] = (
    await control.query(
      `insert into core.users (email, name) values ('bench@example.com', 'bench') returning id`,
    )
  ).rows;
  const [entity] = (await control.query(`select workflow.register_entity('bench.t_rulebook') as id`)).rows;
  for (const rule of RULES) {
    const { rowCount } = await control.query(
      `insert into workflow.automation_rules
         (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
       select $1, e.id, e.entity_type_id, t.id, $2::jsonb, $3, $3
         from workflow.entities e, workflow.trigger_types t
        where e.id = $4 and t.name = $5`,
      [rule.name, JSON.stringify(rule.conditions), user.id, entity.id, rule.trigger],
    );
    if (rowCount !== 1) throw new Error(`capture bench: could not insert the rule "${rule.name}"`);
  }
  const { rows } = await control.query(
    `select right(p.proname, strpos(reverse(p.proname), '_') - 1) as op, p.prosrc
       from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'workflow' and p.proname like 'capture\\_filter\\_' || replace($1::text, '-', '') || '\\_%'`,
    [entity.id],
  );
  const filters = Object.fromEntries(rows.map((row) => [row.op as string, (row.prosrc as string).trim()]));
  const triggers = await control.query(
    `select count(*) as n from pg_catalog.pg_trigger where tgrelid = 'bench.t_rulebook'::regclass and not tgisinternal`,
  );
  if (
    Number(triggers.rows[0].n) !== 3 ||
    !filters.update?.includes('status') ||
    filters.insert !== 'begin return true; end'
  ) {
    throw new Error(
      `capture bench: rulebook's capture is not set up as expected on bench.t_rulebook ` +
        `(${triggers.rows[0].n} triggers, filters ${JSON.stringify(filters)})`,
    );
  }
  const settings = (
    await control.query(
      `select string_agg(name || '=' || current_setting(name), ', ' order by name) as s from pg_settings
        where name in ('synchronous_commit', 'fsync', 'full_page_writes', 'shared_buffers', 'max_wal_size', 'wal_level')`,
    )
  ).rows[0].s as string;
  return { filters, settings };
}

interface ReportInput {
  readonly rounds: number;
  readonly seconds: number;
  readonly bulkReps: number;
  readonly minutes: number;
  readonly setup: Setup;
  readonly pgbenchRuns: readonly PgbenchRun[];
  readonly bulkRuns: readonly BulkRun[];
  readonly listened: number;
}

function report(input: ReportInput): string {
  const { pgbenchRuns, bulkRuns } = input;
  const targets: string[] = [];
  const versusOthers: string[] = [];
  const warnings: string[] = [];

  // Sanity: each variant captured what it should, so that no figure is flattered by a capture
  // that silently did nothing.
  for (const run of pgbenchRuns) {
    const expected =
      run.variant === 'base' || (run.variant === 'rulebook' && !run.workload.rulebookCaptures)
        ? 0
        : run.transactions;
    const slack = expected === 0 ? 0 : run.workload.clients + Math.ceil(expected * 0.01);
    if (Math.abs(run.events - expected) > slack) {
      warnings.push(
        `${run.workload.key} ${run.variant} round ${run.round + 1}: ${run.events} events for ${run.transactions} transactions (expected ${expected})`,
      );
    }
  }
  for (const run of bulkRuns) {
    const expected = run.variant === 'base' ? 0 : ROWS;
    if (run.events !== expected) {
      warnings.push(`bulk ${run.op} ${run.variant}: ${run.events} events (expected ${expected})`);
    }
  }

  // Single-row writes.
  const singleRows: string[][] = [];
  for (const workload of WORKLOADS.filter((w) => !w.drain)) {
    const runs = pgbenchRuns.filter((run) => run.workload === workload);
    const tps = (variant: Variant) =>
      median(runs.filter((run) => run.variant === variant).map((run) => run.tps));
    const ratio = (variant: Variant) =>
      pairedRatio(
        runs,
        variant,
        (run) => run.tps,
        (value, base) => value / base,
      );
    const cells = VARIANTS.map((variant) =>
      variant === 'base'
        ? formatTps(tps(variant))
        : `${formatTps(tps(variant))} (${formatRatio(ratio(variant))})`,
    );
    const rulebook = ratio('rulebook');
    let targetCell = '—';
    if (workload.target !== undefined) {
      const ok = rulebook >= workload.target;
      targetCell = `≥ ${workload.target.toFixed(2)}x: ${verdict(ok)}`;
      targets.push(
        `${verdict(ok)} ${workload.label}, ${workload.clients} clients: ${formatRatio(rulebook)} (target ≥ ${workload.target.toFixed(2)}x)`,
      );
    }
    const behind = (['b', 'c'] as const).filter((variant) => rulebook < ratio(variant));
    versusOthers.push(
      ...behind.map((v) => `${workload.label}, ${plural(workload.clients, 'client')}: behind ${LABEL[v]}`),
    );
    const othersCell = behind.length
      ? `MISS (${behind.map((v) => `${v} ${formatRatio(ratio(v))}`).join(', ')})`
      : 'PASS';
    singleRows.push([workload.label, String(workload.clients), ...cells, targetCell, othersCell]);
  }
  const singleTable = markdownTable(
    ['Workload', 'Clients', ...VARIANTS.map((v) => LABEL[v]), 'rulebook target', 'rulebook ≥ (b), (c)'],
    singleRows,
    ['left', 'right', 'right', 'right', 'right', 'right', 'left', 'left'],
  );

  // Bulk statements: the ratio is throughput, no-trigger seconds over variant seconds.
  const bulkRows: string[][] = [];
  for (const op of ['update', 'insert'] as const) {
    const runs = bulkRuns.filter((run) => run.op === op);
    const seconds = (variant: Variant) =>
      median(runs.filter((run) => run.variant === variant).map((run) => run.seconds));
    const ratio = (variant: Variant) =>
      pairedRatio(
        runs,
        variant,
        (run) => run.seconds,
        (value, base) => base / value,
      );
    const label =
      op === 'update' ? `UPDATE status of all ${formatInt(ROWS)} rows` : `INSERT ${formatInt(ROWS)} rows`;
    const rulebook = ratio('rulebook');
    const ok = rulebook >= 0.4;
    targets.push(`${verdict(ok)} ${label} (one statement): ${formatRatio(rulebook)} (target ≥ 0.40x)`);
    const behind = (['b', 'c'] as const).filter((variant) => rulebook < ratio(variant));
    versusOthers.push(...behind.map((v) => `${label}: behind ${LABEL[v]}`));
    bulkRows.push([
      label,
      ...VARIANTS.map((variant) =>
        variant === 'base'
          ? formatSeconds(seconds(variant))
          : `${formatSeconds(seconds(variant))} (${formatRatio(ratio(variant))})`,
      ),
      `≥ 0.40x: ${verdict(ok)}`,
      behind.length ? `MISS (${behind.map((v) => `${v} ${formatRatio(ratio(v))}`).join(', ')})` : 'PASS',
    ]);
  }
  const bulkTable = markdownTable(
    ['Statement', ...VARIANTS.map((v) => LABEL[v]), 'rulebook target', 'rulebook ≥ (b), (c)'],
    bulkRows,
    ['left', 'right', 'right', 'right', 'right', 'left', 'left'],
  );

  // Draining.
  const drainWorkload = WORKLOADS.find((w) => w.drain)!;
  const drainRuns = pgbenchRuns.filter((run) => run.workload === drainWorkload);
  const drainRatio = (variant: Variant) =>
    pairedRatio(
      drainRuns,
      variant,
      (run) => run.tps,
      (value, base) => value / base,
    );
  const drainRows = drainWorkload.variants.map((variant) => {
    const runs = drainRuns.filter((run) => run.variant === variant);
    const stat = (pick: (run: PgbenchRun) => number) => median(runs.map(pick));
    const d = (pick: (stats: NonNullable<PgbenchRun['drainer']>) => number) =>
      variant === 'base' ? '—' : formatInt(stat((run) => pick(run.drainer!)));
    return [
      variant === 'base' ? LABEL.base : `${LABEL[variant]} + drainer`,
      formatTps(stat((run) => run.tps)),
      variant === 'base' ? '1.00x' : formatRatio(drainRatio(variant)),
      formatInt(stat((run) => run.transactions)),
      variant === 'base' ? '—' : formatInt(stat((run) => run.events)),
      d((s) => s.drained),
      d((s) => s.left),
      variant === 'base'
        ? '—'
        : `${formatInt(stat((run) => run.drainer!.idlePeriods))} (${formatInt(stat((run) => run.drainer!.wokenByNotify))} / ${formatInt(stat((run) => run.drainer!.wokenByTimeout))})`,
      d((s) => s.notifications),
      variant === 'base' ? '—' : formatPercent(stat((run) => run.drainer!.notifications / run.transactions)),
    ];
  });
  const drainTable = markdownTable(
    [
      'Variant',
      'Writes',
      'vs no trigger',
      'Transactions',
      'Events captured',
      'Drained during the run',
      'Left at the end',
      'Times idle (woken by NOTIFY / timeout)',
      'NOTIFYs received',
      'Transactions that notified',
    ],
    drainRows,
    ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
  const rulebookDrain = drainRatio('rulebook');
  targets.push(
    `${verdict(rulebookDrain >= 0.6)} ${drainWorkload.label}, ${drainWorkload.clients} clients: ${formatRatio(rulebookDrain)} (target ≥ 0.60x)`,
  );
  if (rulebookDrain < drainRatio('c'))
    versusOthers.push(`${drainWorkload.label}: behind ${LABEL.c} + drainer`);
  targets.push(
    versusOthers.length
      ? `MISS rulebook ≥ (b) and (c) on every workload: ${versusOthers.join('; ')}`
      : 'PASS rulebook ≥ (b) and (c) on every workload',
  );

  const rawRows = [
    ...pgbenchRuns.map((run) => [
      run.workload.label,
      String(run.workload.clients),
      String(run.round + 1),
      run.drainer ? `${LABEL[run.variant]} + drainer` : LABEL[run.variant],
      formatTps(run.tps),
      formatInt(run.transactions),
      formatInt(run.events),
    ]),
    ...bulkRuns.map((run) => [
      `bulk ${run.op.toUpperCase()}`,
      '1',
      String(run.round + 1),
      LABEL[run.variant],
      formatSeconds(run.seconds),
      '1',
      formatInt(run.events),
    ]),
  ];
  const rawTable = markdownTable(
    ['Workload', 'Clients', 'Round', 'Variant', 'Result', 'Transactions', 'Events'],
    rawRows,
    ['left', 'right', 'right', 'left', 'right', 'right', 'right'],
  );

  const filters = Object.entries(input.setup.filters)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([op, body]) => `${op} \`${body}\``)
    .join(', ');

  return `Four identical tables of ${formatInt(ROWS)} rows (id int primary key, customer_id, status, amount numeric,
notes, created_at, updated_at) that differ only in capture:

- **no trigger**: the baseline;
- **(b) Hasura-style**: a plpgsql AFTER row trigger on insert, update and delete writing
  \`jsonb_build_object('old', to_jsonb(old), 'new', to_jsonb(new))\`, the operation and the table name into
  an event table with a bigserial key, for every change;
- **(c)**: (b) plus \`pg_notify('events', '')\` per row, with one connection LISTENing on the channel for the
  whole run (it received ${formatInt(input.listened)} notifications);
- **rulebook**: \`workflow.register_entity('bench.t_rulebook')\`, an active on_update rule whose condition is
  \`status changed_to 'shipped'\` and an active on_create rule. Generated capture filters: ${filters}.

Load comes from pgbench (\`-n -f script -c N -j min(2, N) -T ${input.seconds}\`), ${input.rounds} round${input.rounds === 1 ? '' : 's'} of every
workload with the variants interleaved (the order rotates each round). Before every run the table is reloaded to the
same ${formatInt(ROWS)} rows and vacuumed, the event tables are truncated, and a CHECKPOINT is taken. Server settings:
${input.setup.settings}. Figures are medians over the rounds; a ratio is the median of each round's ratio to the
no-trigger table measured in the same round (higher is better, 1.00x = free). The whole section took
${input.minutes.toFixed(1)} minutes.

### Single-row writes (pgbench, one statement per transaction)

${singleTable}

### Bulk statements (one statement, timed from node-postgres including commit; median of ${input.bulkReps})

The ratio is throughput: the no-trigger table's seconds divided by the variant's.

${bulkTable}

### Writes while a daemon drains the outbox

UPDATE of status at ${drainWorkload.clients} clients while bench/support/drainer.ts empties the outbox on one
connection (batches of 500, \`for update skip locked\`). rulebook's drainer registers in
\`workflow.idle_daemons\` only when the outbox is empty, and writers NOTIFY only while a daemon is registered, so
while the drainer is busy the writers never take the NOTIFY lock; (c)'s writers notify on every transaction.
Counts are medians per run.

${drainTable}

### Targets

${targets.map((line) => `- ${line}`).join('\n')}
${warnings.length ? `\n**Warnings** (capture did not write the expected number of events):\n\n${warnings.map((w) => `- ${w}`).join('\n')}\n` : ''}
<details><summary>Every run</summary>

${rawTable}

</details>`;
}
