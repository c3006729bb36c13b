import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { leaveWalMode } from '../src/capture/wal/capture-mode.js';
import { WalCapture } from '../src/capture/wal/wal-capture.js';
import { createLogger } from '../src/logger.js';
import type { BenchContext, BenchSection } from './support/context.js';
import { processCpuMs } from './support/cpu.js';
import { runPgbench } from './support/pgbench.js';
import { seedTableSql } from './support/seed-table.js';
import { formatInt, formatRatio, formatSeconds, formatTps, markdownTable, median } from './support/report.js';

/**
 * What WAL capture (RULEBOOK_CAPTURE=wal, docs/capture-wal.md) costs a writer, and how fast its
 * reader appends. The capture workloads of bench/capture.ts, on two identical tables: bench.t_base
 * (nothing registered) and bench.t_wal (registered, with capture.ts' rules, in WAL mode: REPLICA
 * IDENTITY FULL, in the publication, capture triggers disabled), while a WalCapture in this process
 * reads the slot, as a daemon would. A database of its own: the capture mode is the database's, so
 * the trigger variants of capture.ts cannot share one with it.
 */

const ROWS = 100_000;
const DATABASE = 'bench_capture_wal';
const TOGGLE_STATUS = `case when status = 'shipped' then 'pending' else 'shipped' end`;

/**
 * 'wal': the reader runs while the writers write (on this 2-core machine it competes with them for
 * CPU); 'deferred': the same table, with the reader stopped while the writers write and started
 * after, which is what the writer itself pays (its WAL, REPLICA IDENTITY FULL).
 */
type Variant = 'base' | 'wal' | 'deferred';
const VARIANTS: readonly Variant[] = ['base', 'wal', 'deferred'];
const tableOf = (variant: Variant) => (variant === 'base' ? 'bench.t_base' : 'bench.t_wal');

type Script = 'update_status' | 'insert' | 'update_notes';

function scriptText(script: Script, table: string): string {
  switch (script) {
    case 'update_status':
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

const WORKLOADS: readonly { key: string; label: string; clients: number; script: Script }[] = [
  { key: 'update-1', label: 'UPDATE status (relevant)', clients: 1, script: 'update_status' },
  { key: 'update-16', label: 'UPDATE status (relevant)', clients: 16, script: 'update_status' },
  { key: 'insert-1', label: 'INSERT', clients: 1, script: 'insert' },
  { key: 'insert-16', label: 'INSERT', clients: 16, script: 'insert' },
  { key: 'notes-16', label: 'UPDATE notes (irrelevant)', clients: 16, script: 'update_notes' },
];

const BULK_SQL = {
  update: (table: string) => `update ${table} set status = ${TOGGLE_STATUS}`,
  insert: (table: string) =>
    `insert into ${table} (id, customer_id, status, amount, notes) ` +
    `select g, g % 1000, 'new', (g % 10000) / 100.0, 'bulk ' || g from generate_series(${ROWS + 1}, ${2 * ROWS}) g`,
} as const;

const SETUP_SQL = `${seedTableSql(ROWS)}
create table bench.t_base (like bench.seed including all);
create table bench.t_wal (like bench.seed including all);
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

function ratioOf<R extends { variant: Variant; round: number }>(
  runs: readonly R[],
  value: (run: R) => number,
  variant: Variant = 'wal',
): number {
  const rounds = [...new Set(runs.map((run) => run.round))];
  return median(
    rounds.map((round) => {
      const of = (variant: Variant) => runs.find((run) => run.round === round && run.variant === variant)!;
      return value(of(variant)) / value(of('base'));
    }),
  );
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const rounds = ctx.quick ? 1 : 3;
  const seconds = ctx.quick ? 2 : 8;
  const started = performance.now();
  const url = await ctx.createDatabase(DATABASE);
  const scriptDir = path.join(ctx.tmpDir, 'capture-wal');
  fs.mkdirSync(scriptDir, { recursive: true });
  const control = new pg.Client({ connectionString: url, application_name: 'bench control' });
  let capture: WalCapture | undefined;
  let appended = 0;
  try {
    await control.connect();
    const query = async (text: string, values?: unknown[]) => (await control.query(text, values)).rows;
    const { wal_level: walLevel } = (await query(`select current_setting('wal_level') as wal_level`))[0]!;
    if (walLevel !== 'logical')
      throw new Error(`capture-wal bench: the server runs with wal_level=${walLevel}`);
    ctx.log('capture-wal: creating the tables and rules, switching to WAL capture');
    await query(SETUP_SQL);
    const [user] = await query(
      `insert into core.users (email, name) values ('bench@example.com', 'bench') returning id`,
    );
    const [entity] = await query(`select workflow.register_entity('bench.t_wal') as id`);
    for (const rule of RULES) {
      await query(
        `insert into workflow.automation_rules
           (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
         select $1, e.id, e.entity_type_id, t.id, $2::jsonb, $3, $3
           from workflow.entities e, workflow.trigger_types t where e.id = $4 and t.name = $5`,
        [rule.name, JSON.stringify(rule.conditions), user!.id, entity!.id, rule.trigger],
      );
    }
    const startReader = async () => {
      const reader = new WalCapture({
        databaseUrl: url,
        logger: createLogger('warn'),
        batchSize: 2000,
        retryMs: 500,
        onAppended: (events) => (appended += events),
      });
      capture = reader;
      await reader.start();
      for (let i = 0; i < 200 && !reader.isReader; i++) await new Promise((r) => setTimeout(r, 50));
      if (!reader.isReader) throw new Error('capture-wal bench: the WAL reader did not start');
    };
    const stopReader = async () => {
      await capture?.stop();
      capture = undefined;
    };
    await startReader();

    /** The reader has appended everything written so far; returns how long that took. */
    const drained = async (): Promise<number> => {
      const start = performance.now();
      const [{ lsn }] = await query('select pg_current_wal_insert_lsn()::text as lsn');
      for (;;) {
        const [row] = await query(
          `select confirmed_flush_lsn >= $1::pg_lsn as done from pg_replication_slots
            where slot_name = (select slot_name from workflow.capture_settings)`,
          [lsn],
        );
        if (row?.done) return (performance.now() - start) / 1000;
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const prepare = async (variant: Variant) => {
      const table = tableOf(variant);
      await query(`truncate ${table}`);
      await query(`insert into ${table} select * from bench.seed`);
      await query(`vacuum (analyze) ${table}`);
      await drained();
      await query('truncate workflow.events');
      await query('alter sequence bench.insert_ids restart');
      await query('checkpoint');
      appended = 0;
    };
    const scriptPath = (script: Script, variant: Variant) => {
      const file = path.join(scriptDir, `${script}-${variant}.sql`);
      if (!fs.existsSync(file)) fs.writeFileSync(file, scriptText(script, tableOf(variant)));
      return file;
    };

    /**
     * CPU milliseconds so far of what the reader runs: its walsender and append backends (from
     * /proc, so Linux only; NaN elsewhere), and this process (the Node decoding; the control
     * connection's share of it is negligible).
     */
    type ReaderCpu = { walsender: number; append: number; node: number };
    const readerCpu = async (): Promise<{
      backends: Map<number, [keyof ReaderCpu, number]>;
      node: number;
    }> => {
      const rows = await query(
        `select pid, backend_type = 'walsender' as walsender from pg_stat_activity
          where application_name in ('rulebook-wal-capture', 'rulebook-wal-append')`,
      );
      const backends = new Map<number, [keyof ReaderCpu, number]>();
      for (const { pid, walsender } of rows) {
        backends.set(pid as number, [
          walsender ? 'walsender' : 'append',
          processCpuMs(pid as number) ?? Number.NaN,
        ]);
      }
      const usage = process.cpuUsage();
      return { backends, node: (usage.user + usage.system) / 1000 };
    };
    const cpuSince = async (before: Awaited<ReturnType<typeof readerCpu>>): Promise<ReaderCpu> => {
      const after = await readerCpu();
      const used = { walsender: 0, append: 0, node: after.node - before.node };
      // A backend the pool opened during the run counts from its start.
      for (const [pid, [kind, ms]] of after.backends) used[kind] += ms - (before.backends.get(pid)?.[1] ?? 0);
      return used;
    };

    const pgbenchRuns: {
      key: string;
      round: number;
      variant: Variant;
      tps: number;
      events: number;
      /** Reader CPU microseconds per written change (wal variant). */
      cpu?: ReaderCpu;
    }[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const workload of WORKLOADS) {
        for (const variant of round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()) {
          await prepare(variant);
          if (variant === 'deferred') await stopReader();
          const cpuBefore = variant === 'wal' ? await readerCpu() : undefined;
          const result = await runPgbench({
            pgbench: ctx.pgbench,
            url,
            scriptPath: scriptPath(workload.script, variant),
            clients: workload.clients,
            seconds,
          });
          if (variant === 'deferred') await startReader();
          await drained();
          let cpu;
          if (cpuBefore) {
            const used = await cpuSince(cpuBefore);
            const perChange = (ms: number) => (ms * 1000) / result.transactions;
            cpu = {
              walsender: perChange(used.walsender),
              append: perChange(used.append),
              node: perChange(used.node),
            };
          }
          pgbenchRuns.push({ key: workload.key, round, variant, tps: result.tps, events: appended, cpu });
          ctx.log(
            `capture-wal: round ${round + 1}/${rounds} ${workload.key} ${variant}: ${formatTps(result.tps)}, ${formatInt(appended)} events` +
              (cpu
                ? `, reader CPU per change ${cpu.walsender.toFixed(0)} us walsender, ${cpu.append.toFixed(0)} us append, ${cpu.node.toFixed(0)} us Node`
                : ''),
          );
        }
      }
    }

    const bulkRuns: {
      op: 'update' | 'insert';
      round: number;
      variant: Variant;
      seconds: number;
      drain: number;
      events: number;
    }[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const variant of round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()) {
        for (const op of ['update', 'insert'] as const) {
          await prepare(variant);
          if (variant === 'deferred') await stopReader();
          const start = performance.now();
          await query(BULK_SQL[op](tableOf(variant)));
          const elapsed = (performance.now() - start) / 1000;
          if (variant === 'deferred') await startReader();
          // The reader's time to append the statement's changes after its commit.
          const drain = await drained();
          bulkRuns.push({ op, round, variant, seconds: elapsed, drain, events: appended });
          ctx.log(
            `capture-wal: bulk ${round + 1}/${rounds} ${op} ${variant}: ${formatSeconds(elapsed)}, ` +
              `${formatInt(appended)} events appended ${formatSeconds(drain)} after the commit`,
          );
        }
      }
    }

    const rows = WORKLOADS.map((workload) => {
      const runs = pgbenchRuns.filter((run) => run.key === workload.key);
      const ratio = ratioOf(runs, (run) => run.tps);
      const deferred = ratioOf(runs, (run) => run.tps, 'deferred');
      const tps = (variant: Variant) => median(runs.filter((r) => r.variant === variant).map((r) => r.tps));
      const events = median(runs.filter((r) => r.variant === 'wal').map((r) => r.events));
      const walRuns = runs.filter((r) => r.variant === 'wal' && r.cpu);
      const cpuOf = (kind: keyof ReaderCpu) => median(walRuns.map((r) => r.cpu![kind])).toFixed(0);
      const cpu = `${cpuOf('walsender')} / ${cpuOf('append')} / ${cpuOf('node')} us`;
      return [
        `${workload.label}, ${workload.clients} client${workload.clients > 1 ? 's' : ''}`,
        formatTps(tps('base')),
        `${formatTps(tps('wal'))} (${formatRatio(ratio)})`,
        `${formatTps(tps('deferred'))} (${formatRatio(deferred)})`,
        formatInt(events),
        cpu,
        `${ratio >= 0.9 ? 'met' : 'missed'} / ${deferred >= 0.9 ? 'met' : 'missed'}`,
      ];
    });
    for (const op of ['update', 'insert'] as const) {
      const runs = bulkRuns.filter((run) => run.op === op);
      // A time: the ratio is base / wal, so that above 1 is faster, as for throughput.
      const ratio = 1 / ratioOf(runs, (run) => run.seconds);
      const deferred = 1 / ratioOf(runs, (run) => run.seconds, 'deferred');
      const time = (variant: Variant) =>
        median(runs.filter((r) => r.variant === variant).map((r) => r.seconds));
      rows.push([
        `100,000-row ${op.toUpperCase()}, one statement`,
        formatSeconds(time('base')),
        `${formatSeconds(time('wal'))} (${formatRatio(ratio)})`,
        `${formatSeconds(time('deferred'))} (${formatRatio(deferred)})`,
        formatInt(median(runs.filter((r) => r.variant === 'wal').map((r) => r.events))),
        '',
        `${ratio >= 0.9 ? 'met' : 'missed'} / ${deferred >= 0.9 ? 'met' : 'missed'}`,
      ]);
    }
    const readerRows = (['update', 'insert'] as const).map((op) => {
      const runs = bulkRuns.filter((run) => run.op === op && run.variant === 'deferred');
      const drain = median(runs.map((r) => r.drain));
      const events = median(runs.map((r) => r.events));
      return [
        `100,000-row ${op.toUpperCase()}`,
        formatInt(events),
        formatSeconds(drain),
        formatInt(events / drain),
      ];
    });
    const minutes = (performance.now() - started) / 60_000;
    const markdown = [
      `Each capture workload of the section above, on a table in WAL mode (\`RULEBOOK_CAPTURE=wal\`, ` +
        `docs/capture-wal.md) against an identical table nothing captures, in the same database and run, ` +
        `while the WAL reader runs in the benchmark process and appends to workflow.events. pgbench ` +
        `${seconds} s per run, ${rounds} round${rounds > 1 ? 's' : ''} alternating the order; ratios are ` +
        `medians of the per-round ratios (bulk: time of no capture / time with capture). "Reader ` +
        `running": the reader appends while pgbench writes, competing for the machine's CPUs; "reader ` +
        `after": the same table with the reader stopped during the write and started after it, which ` +
        `is what the writer itself pays. "Reader CPU per change": the CPU time of the reader's walsender and append backends, and of the benchmark process (Node's decoding), over the pgbench run and the drain after it, divided by the transactions pgbench wrote (one change each). Goal: >= 0.9x of no capture on every workload (issue 11). ` +
        `${minutes.toFixed(1)} minutes.`,
      '',
      markdownTable(
        [
          'workload',
          'no capture',
          'WAL, reader running',
          'WAL, reader after',
          'events appended',
          'reader CPU per change: walsender / append / Node',
          '>= 0.9x (running / after)',
        ],
        rows,
        ['left', 'right', 'right', 'right', 'right', 'right', 'left'],
      ),
      '',
      'The WAL reader: how long after its start, following one 100,000-row statement written while ' +
        'it was stopped, its events were all appended and confirmed (median), while nothing else ran.',
      '',
      markdownTable(['statement', 'events', 'appended within', 'events/s'], readerRows, [
        'left',
        'right',
        'right',
        'right',
      ]),
    ].join('\n');
    return { title: 'WAL capture: what a write pays, and what the reader appends', markdown };
  } finally {
    await capture?.stop().catch(() => undefined);
    // The slot would hold the server's WAL through the sections that follow.
    await leaveWalMode(control, createLogger('warn')).catch(() => undefined);
    await control.end().catch(() => undefined);
  }
}
