import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { Engine } from '../src/engine/engine.js';
import { createLogger } from '../src/logger.js';
import type { BenchContext, BenchSection } from './support/context.js';
import { cpuSnapshot, cpuUsed } from './support/cpu.js';
import {
  GRAPHILE_BATCHED,
  GRAPHILE_C10,
  GRAPHILE_DEFAULT,
  GraphileReference,
  graphileVersion,
  type GraphileVariant,
  type ThroughputRun,
} from './support/graphile.js';
import {
  formatMs,
  latencyStats,
  paceWrites,
  timeDrain,
  waitUntil,
  type LatencyStats,
} from './support/latency.js';
import { formatInt, formatPercent, formatRatio, markdownTable, median } from './support/report.js';

/**
 * End to end: rulebook's daemon (in this process) and PostgreSQL together on one machine, against
 * graphile-worker running a trivial task on the same server in the same run.
 *
 * Two rule sets of 10 and 1,000 active on_update rules over 50 tables bench.e01..e50. On each table
 * that has rules, the first rule is `status changed_to 'shipped'`; the others (only with 1,000 rules:
 * 20 a table) are `status changed` and `amount greater_than 1e12`, which never holds. Every rule has
 * one create_alert action. Scenario (a) sets status to 'packed': the update is captured (a rule
 * watches status) but no rule matches. Scenario (b) sets status to 'shipped': exactly one rule
 * matches and writes one alert.
 */

type Scenario = 'a' | 'b';
export type RuleCount = 10 | 1000;

const RULE_COUNTS: readonly RuleCount[] = [10, 1000];
const SCENARIOS: readonly Scenario[] = ['a', 'b'];
const TABLES = 50;
const ROWS = 2_000;
const LATENCY_RATE = 200;

// BENCH_ENGINE_BATCH_SIZE tries another batch size (the engine's default is 100).
const ENGINE_SETTINGS = {
  concurrency: 2,
  batchSize: Number(process.env.BENCH_ENGINE_BATCH_SIZE ?? 100),
  pollIntervalMs: 1_000,
} as const;

const STATUS: Record<Scenario, string> = { a: 'packed', b: 'shipped' };

const tableName = (index: number) => `e${String(index + 1).padStart(2, '0')}`;

/** Tables that carry rules: 10 rules sit on e01..e10, 1,000 on all 50 (20 each). */
const tablesUsed = (rules: RuleCount) => Math.min(rules, TABLES);

interface Target {
  readonly label: string;
  readonly ok: boolean;
}

interface RulebookRun {
  readonly rules: RuleCount;
  readonly scenario: Scenario;
  readonly round: number;
  readonly run: ThroughputRun;
  readonly executions: number;
  readonly alerts: number;
  readonly statements?: readonly StatementRow[];
}

interface GraphileRun {
  readonly variant: GraphileVariant;
  readonly round: number;
  readonly run: ThroughputRun;
}

interface StatementRow {
  readonly query: string;
  readonly calls: number;
  readonly rows: number;
  readonly totalMs: number;
}

const SETUP_SQL = `
create schema bench;
do $$
begin
  for k in 1..${TABLES} loop
    execute format('create table bench.%I (id bigint primary key, status text not null, amount numeric not null, n int not null default 0)',
                   'e' || lpad(k::text, 2, '0'));
    execute format('insert into bench.%I (id, status, amount) select g, ''new'', g %% 1000 from generate_series(1, ${ROWS}) g',
                   'e' || lpad(k::text, 2, '0'));
  end loop;
end
$$;

-- For the latency runs: one NOTIFY per daemon transaction naming the writes it completed (the
-- writer puts its sequence number in n). NOTIFY is delivered when the transaction commits.
create function bench.notify_removed() returns trigger language plpgsql as $$
declare
  v_done text;
begin
  select string_agg(new_row ->> 'n', ',') into v_done from removed;
  if v_done is not null then
    perform pg_notify('bench_done', v_done);
  end if;
  return null;
end
$$;
create function bench.notify_executed() returns trigger language plpgsql as $$
declare
  v_done text;
begin
  select string_agg(trigger_data -> 'new' ->> 'n', ',') into v_done from added;
  if v_done is not null then
    perform pg_notify('bench_done', v_done);
  end if;
  return null;
end
$$;
`;

const LATENCY_TRIGGER: Record<Scenario, { create: string; drop: string }> = {
  a: {
    create: `create trigger bench_done after delete on workflow.events referencing old table as removed
               for each statement execute function bench.notify_removed()`,
    drop: 'drop trigger bench_done on workflow.events',
  },
  b: {
    create: `create trigger bench_done after insert on workflow.automation_executions referencing new table as added
               for each statement execute function bench.notify_executed()`,
    drop: 'drop trigger bench_done on workflow.automation_executions',
  },
};

const RULE_INSERT = `
insert into workflow.automation_rules
  (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
select r.name, e.id, e.entity_type_id, t.id, r.conditions, $2, $2
  from jsonb_to_recordset($1::jsonb) as r (name text, entity text, conditions jsonb)
  join workflow.entities e on e.schema_name = 'bench' and e.name = r.entity
  join workflow.trigger_types t on t.name = 'on_update'`;

const MATCHING_CONDITIONS = {
  field_conditions: [{ field_name: 'status', operator: 'changed_to', value: 'shipped' }],
};
const NEVER_CONDITIONS = {
  field_conditions: [
    { field_name: 'status', operator: 'changed' },
    { field_name: 'amount', operator: 'greater_than', value: 1e12 },
  ],
};

/** Prepared once per connection, so that polling every 10 ms costs the server as little as possible. */
export const EVENTS_EMPTY = {
  name: 'bench.events_empty',
  text: 'select not exists (select from workflow.events) as empty',
};

/** One database per rule set, its rules, and the connections the benchmark drives it with. */
export class RuleDatabase {
  readonly control: pg.Client;
  readonly writer: pg.Client;
  readonly listener: pg.Client;
  readonly completedAt = new Map<number, number>();
  statementsAvailable = false;
  #writerPid = 0;
  #listenerPid = 0;

  constructor(
    readonly rules: RuleCount,
    readonly url: string,
  ) {
    this.control = new pg.Client({ connectionString: url, application_name: 'bench control' });
    this.writer = new pg.Client({ connectionString: url, application_name: 'bench writer' });
    this.listener = new pg.Client({ connectionString: url, application_name: 'bench listener' });
    this.listener.on('notification', (message) => {
      const now = performance.now();
      for (const seq of (message.payload ?? '').split(',')) {
        if (seq) this.completedAt.set(Number(seq), now);
      }
    });
  }

  static async create(
    ctx: BenchContext,
    rules: RuleCount,
    database = `bench_engine_${rules}_rules`,
  ): Promise<RuleDatabase> {
    const url = await ctx.createDatabase(database);
    const db = new RuleDatabase(rules, url);
    await db.control.connect();
    await db.writer.connect();
    await db.listener.connect();
    await db.listener.query('listen bench_done');
    db.#writerPid = (await db.writer.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    db.#listenerPid = (
      await db.listener.query<{ pid: number }>('select pg_backend_pid() as pid')
    ).rows[0]!.pid;
    await db.#setUp();
    return db;
  }

  get ownPids(): number[] {
    return [this.#writerPid, this.#listenerPid];
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.control.end(), this.writer.end(), this.listener.end()]);
  }

  async #setUp(): Promise<void> {
    const q = (text: string, values?: unknown[]) => this.control.query(text, values);
    await q(SETUP_SQL);
    const user = (
      await q(`insert into core.users (email, name) values ('bench@example.com', 'bench') returning id`)
    ).rows[0].id as string;
    for (let k = 0; k < TABLES; k++)
      await q('select workflow.register_entity($1)', [`bench.${tableName(k)}`]);
    const used = tablesUsed(this.rules);
    const specs = Array.from({ length: this.rules }, (_, i) => ({
      name: `bench rule ${i + 1}`,
      entity: tableName(i % used),
      conditions: i < used ? MATCHING_CONDITIONS : NEVER_CONDITIONS,
    }));
    await q('begin');
    await q(RULE_INSERT, [JSON.stringify(specs), user]);
    await q(
      `insert into workflow.rule_actions (automation_rules_id, name, action_config, execution_order)
       select id, 'alert', $1::jsonb, 1 from workflow.automation_rules`,
      [
        JSON.stringify({
          action_type: 'create_alert',
          alert_type: 'bench',
          severity: 'low',
          title: 'Order {{id}} {{status}}',
          message: 'Order {{id}} of {{entity.name}} went from {{old.status}} to {{new.status}}',
          recipients: { users: [user] },
        }),
      ],
    );
    await q('commit');
    const check = (
      await q(
        `select (select count(*) from workflow.automation_rules where is_active)::int as rules,
                (select count(*) from workflow.rule_actions)::int as actions`,
      )
    ).rows[0];
    if (check.rules !== this.rules || check.actions !== this.rules) {
      throw new Error(
        `engine bench: set up ${check.rules} rules and ${check.actions} actions, not ${this.rules}`,
      );
    }
    try {
      await q('create extension if not exists pg_stat_statements');
      await q('select count(*) from pg_stat_statements');
      this.statementsAvailable = true;
    } catch {
      this.statementsAvailable = false;
    }
  }

  /** The same starting point for every run: rows back to 'new', no alerts or executions, a checkpoint. */
  async prepare(): Promise<void> {
    const q = (text: string) => this.control.query(text);
    await q('set session_replication_role = replica'); // no capture while resetting
    try {
      for (let k = 0; k < tablesUsed(this.rules); k++) {
        await q(`update bench.${tableName(k)} set status = 'new', n = 0 where status <> 'new' or n <> 0`);
      }
    } finally {
      await q('reset session_replication_role');
    }
    const left = (await this.control.query<{ n: number }>('select count(*)::int as n from workflow.events'))
      .rows[0]!.n;
    if (left > 0) throw new Error(`engine bench: ${left} events left over from the previous run`);
    await q('truncate workflow.alert_recipients, workflow.alerts, workflow.automation_executions cascade');
    await q('delete from workflow.idle_daemons');
    await q(
      'vacuum (analyze) workflow.events, workflow.alerts, workflow.alert_recipients, workflow.automation_executions',
    );
    for (let k = 0; k < tablesUsed(this.rules); k++) await q(`vacuum (analyze) bench.${tableName(k)}`);
    await q('checkpoint');
  }

  async startEngine(): Promise<Engine> {
    const engine = new Engine({
      databaseUrl: this.url,
      logger: createLogger(process.env.BENCH_ENGINE_LOG_LEVEL ?? 'silent'),
      ...ENGINE_SETTINGS,
    });
    await engine.start();
    // Idle: every claim loop has found the outbox empty and registered to be woken.
    let idle = 0;
    for (let attempt = 0; attempt < 500 && idle < ENGINE_SETTINGS.concurrency; attempt++) {
      idle = (
        await this.control.query<{ n: number }>(
          `select count(*)::int as n from workflow.idle_daemons where daemon_id like $1`,
          [`${engine.daemonId}/%`],
        )
      ).rows[0]!.n;
      if (idle < ENGINE_SETTINGS.concurrency) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    if (idle < ENGINE_SETTINGS.concurrency) throw new Error('engine bench: the daemon did not go idle');
    return engine;
  }

  /** The backlog: `events` updates in one transaction, spread evenly over the tables with rules. */
  backlogSql(scenario: Scenario, events: number): string {
    const used = tablesUsed(this.rules);
    const perTable = events / used;
    if (!Number.isInteger(perTable) || perTable > ROWS) {
      throw new Error(
        `engine bench: ${events} events do not spread evenly over ${used} tables of ${ROWS} rows`,
      );
    }
    const updates = Array.from(
      { length: used },
      (_, k) => `update bench.${tableName(k)} set status = '${STATUS[scenario]}' where id <= ${perTable};`,
    );
    return ['begin;', ...updates, 'commit;'].join('\n');
  }

  async statements(): Promise<StatementRow[]> {
    const { rows } = await this.control.query<{ query: string; calls: string; rows: string; total: number }>(
      `select regexp_replace(query, '\\s+', ' ', 'g') as query, calls, rows, total_exec_time as total
         from pg_stat_statements
        where dbid = (select oid from pg_database where datname = current_database())
          and query not ilike '%pg_stat_statements%' and query not like '%not exists (select from workflow.events)%'
        order by total_exec_time desc limit 12`,
    );
    return rows.map((row) => ({
      query: row.query.length > 140 ? `${row.query.slice(0, 137)}...` : row.query,
      calls: Number(row.calls),
      rows: Number(row.rows),
      totalMs: row.total,
    }));
  }
}

async function rulebookThroughput(
  db: RuleDatabase,
  scenario: Scenario,
  events: number,
  round: number,
  timeoutMs: number,
  collectStatements: boolean,
): Promise<RulebookRun> {
  await db.prepare();
  const backlog = db.backlogSql(scenario, events);
  const engine = await db.startEngine();
  let stopped = false;
  try {
    if (collectStatements) await db.control.query('select pg_stat_statements_reset()');
    await db.writer.query(backlog);
    const startedAt = performance.now();
    const before = await cpuSnapshot(db.control, db.ownPids);
    const drain = await timeDrain(
      async () => (await db.control.query<{ empty: boolean }>(EVENTS_EMPTY)).rows[0]!.empty,
      startedAt,
      timeoutMs,
    );
    const after = await cpuSnapshot(db.control, db.ownPids);
    const statements = collectStatements ? await db.statements() : undefined;
    await engine.stop();
    stopped = true;
    const counts = (
      await db.control.query<{ executions: number; alerts: number; left: number }>(
        `select (select count(*) from workflow.automation_executions)::int as executions,
                (select count(*) from workflow.alerts)::int as alerts,
                (select count(*) from workflow.events)::int as left`,
      )
    ).rows[0]!;
    const processed = engine.metrics.eventsProcessed.value();
    const items = drain.complete ? events : events - counts.left;
    if (drain.complete && processed !== events) {
      throw new Error(`engine bench: the daemon handled ${processed} events, expected ${events}`);
    }
    if (counts.left > 0) await db.control.query('delete from workflow.events');
    return {
      rules: db.rules,
      scenario,
      round,
      run: {
        items,
        seconds: drain.seconds,
        rate: items / drain.seconds,
        complete: drain.complete,
        cpu: cpuUsed(before, after),
      },
      executions: counts.executions,
      alerts: counts.alerts,
      statements,
    };
  } finally {
    if (!stopped) await engine.stop();
  }
}

async function rulebookLatency(
  db: RuleDatabase,
  scenario: Scenario,
  count: number,
  warmup: number,
): Promise<LatencyStats> {
  await db.prepare();
  await db.control.query(LATENCY_TRIGGER[scenario].create);
  db.completedAt.clear();
  const engine = await db.startEngine();
  try {
    const used = tablesUsed(db.rules);
    const statements = Array.from(
      { length: used },
      (_, k) => `update bench.${tableName(k)} set status = '${STATUS[scenario]}', n = $2 where id = $1`,
    );
    if (count / used > ROWS) throw new Error('engine bench: not enough rows for the latency run');
    const { committedAt, seconds } = await paceWrites(LATENCY_RATE, count, async (i) => {
      await db.writer.query(statements[i % used]!, [Math.floor(i / used) + 1, i]);
    });
    await waitUntil(() => db.completedAt.size >= count, 10_000);
    return latencyStats(committedAt, db.completedAt, warmup, seconds);
  } finally {
    await engine.stop();
    await db.control.query(LATENCY_TRIGGER[scenario].drop);
  }
}

/**
 * The hot-row workload (issue 11), on the 10-rule database, captured but matching no rule, so that
 * it measures how the queue is claimed: `hot` is one row (bench.e01 id 1) updated HOT_UPDATES
 * times, then HOT_UPDATES other rows once each; `spread` is the same number of events, one per row;
 * `alone` is the other rows without the hot row. The writes commit before the daemon starts; the
 * clock starts with it.
 */
type HotWorkload = 'hot' | 'spread' | 'alone';

const HOT_UPDATES = 3_000;

interface HotRun {
  readonly workload: HotWorkload;
  readonly round: number;
  readonly events: number;
  /** Until every event is handled. */
  readonly seconds: number;
  /** Until every event of a row other than the hot row is handled. */
  readonly othersSeconds: number;
  readonly complete: boolean;
}

/** `count` rows other than the hot row, spread over the tables with rules (ids from 2). */
function otherRowsSql(db: RuleDatabase, count: number): string[] {
  const used = tablesUsed(db.rules);
  const perTable = count / used;
  if (!Number.isInteger(perTable) || perTable + 1 > ROWS)
    throw new Error(`engine bench: ${count} rows do not spread over ${used} tables`);
  return Array.from(
    { length: used },
    (_, k) => `update bench.${tableName(k)} set status = 'packed' where id between 2 and ${perTable + 1};`,
  );
}

async function hotRowRun(
  db: RuleDatabase,
  workload: HotWorkload,
  round: number,
  timeoutMs: number,
): Promise<HotRun> {
  await db.prepare();
  const writes =
    workload === 'spread'
      ? otherRowsSql(db, HOT_UPDATES * 2)
      : [
          ...(workload === 'hot'
            ? [
                // One transaction per update, as a busy counter gets them.
                `do $$ begin for i in 1..${HOT_UPDATES} loop
                   update bench.${tableName(0)} set status = case when status = 'packed' then 'new' else 'packed' end
                    where id = 1;
                   commit;
                 end loop; end $$;`,
              ]
            : []),
          ...otherRowsSql(db, HOT_UPDATES),
        ];
  for (const statement of writes) await db.writer.query(statement);
  const events = workload === 'alone' ? HOT_UPDATES : HOT_UPDATES * 2;
  const queued = (await db.control.query<{ n: number }>('select count(*)::int as n from workflow.events'))
    .rows[0]!.n;
  if (queued !== events)
    throw new Error(`engine bench: ${queued} events queued for ${workload}, not ${events}`);
  const hotKey = JSON.stringify({ id: 1 });
  const startedAt = performance.now();
  const engine = new Engine({
    databaseUrl: db.url,
    logger: createLogger(process.env.BENCH_ENGINE_LOG_LEVEL ?? 'silent'),
    ...ENGINE_SETTINGS,
  });
  await engine.start();
  try {
    let othersAt: number | undefined;
    const drain = await timeDrain(
      async () => {
        const { rows } = await db.control.query<{ others: boolean; any: boolean }>({
          name: 'bench.hot_rows_left',
          text: `select exists (select from workflow.events e join workflow.entities n on n.id = e.entity_id
                                 where n.name <> $1 or e.row_key <> $2::jsonb) as others,
                        exists (select from workflow.events) as any`,
          values: [tableName(0), hotKey],
        });
        if (!rows[0]!.others) othersAt ??= performance.now();
        return !rows[0]!.any;
      },
      startedAt,
      timeoutMs,
    );
    return {
      workload,
      round,
      events,
      seconds: drain.seconds,
      othersSeconds: ((othersAt ?? performance.now()) - startedAt) / 1000,
      complete: drain.complete,
    };
  } finally {
    await engine.stop();
    await db.control.query('delete from workflow.events');
  }
}

/** The same list, starting at a different place each round, so that nothing always runs first. */
function rotate<T>(items: readonly T[], by: number): T[] {
  return items.map((_, i) => items[(i + by) % items.length]!);
}

function verdict(ok: boolean): string {
  return ok ? 'PASS' : 'MISS';
}

type Step =
  { kind: 'rulebook'; rules: RuleCount; scenario: Scenario } | { kind: 'graphile'; variant: GraphileVariant };

/** Events or jobs queued for a throughput run. */
interface Backlog {
  readonly fast: number;
  readonly slow: number;
}

/** (a) is compared with graphile batched, (b) with graphile default: each pair gets one backlog. */
function backlogKind(step: Step): keyof Backlog {
  if (step.kind === 'rulebook') return step.scenario === 'a' ? 'fast' : 'slow';
  return step.variant === GRAPHILE_DEFAULT ? 'slow' : 'fast';
}

/**
 * BENCH_ENGINE_ONLY=throughput,matched,hot,latency runs only those parts (to iterate on one; the
 * report then leaves the others empty); BENCH_ENGINE_MATCHED overrides the matched backlog;
 * BENCH_ENGINE_STATEMENTS=1 logs pg_stat_statements of every matched run; BENCH_ENGINE_BATCH_SIZE
 * sets the daemon's batch size.
 */
const PARTS = ['throughput', 'matched', 'hot', 'latency'] as const;
type Part = (typeof PARTS)[number];

function partsToRun(): ReadonlySet<Part> {
  const only = process.env.BENCH_ENGINE_ONLY;
  if (!only) return new Set(PARTS);
  const wanted = only.split(',').map((part) => part.trim());
  const unknown = wanted.filter((part) => !(PARTS as readonly string[]).includes(part));
  if (unknown.length > 0)
    throw new Error(`BENCH_ENGINE_ONLY: unknown part ${unknown.join(', ')} (known: ${PARTS.join(', ')})`);
  return new Set(wanted as Part[]);
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const quick = ctx.quick;
  const parts = partsToRun();
  const logStatements = process.env.BENCH_ENGINE_STATEMENTS === '1';
  const rounds = quick ? 1 : 3;
  // The slow runs ((b), which runs an action per event, and graphile-worker's defaults, which
  // commit per job) get a smaller backlog, to keep the full run within ten minutes on a small
  // machine; the runs compared with each other in a target get the same backlog.
  const backlog: Backlog = quick ? { fast: 2_000, slow: 1_000 } : { fast: 20_000, slow: 5_000 };
  const latencySeconds = quick ? 2 : 10;
  const warmup = LATENCY_RATE / 2;
  const latencyCount = LATENCY_RATE * latencySeconds + warmup;
  const timeoutMs = quick ? 60_000 : 180_000;
  const started = performance.now();

  ctx.log('engine: setting up the databases');
  const databases = new Map<RuleCount, RuleDatabase>();
  let graphile: GraphileReference | undefined;
  try {
    for (const rules of RULE_COUNTS) {
      const setupStart = performance.now();
      databases.set(rules, await RuleDatabase.create(ctx, rules));
      ctx.log(`engine: ${rules} rules set up in ${((performance.now() - setupStart) / 1000).toFixed(1)} s`);
    }
    graphile = await GraphileReference.create(ctx, 'bench_engine_graphile');

    const steps: Step[] = [
      { kind: 'graphile', variant: GRAPHILE_DEFAULT },
      ...RULE_COUNTS.flatMap((rules) =>
        SCENARIOS.map((scenario): Step => ({ kind: 'rulebook', rules, scenario })),
      ),
      { kind: 'graphile', variant: GRAPHILE_BATCHED },
    ];
    const rulebookRuns: RulebookRun[] = [];
    const graphileRuns: GraphileRun[] = [];
    for (let round = 0; round < (parts.has('throughput') ? rounds : 0); round++) {
      for (const step of rotate(steps, round)) {
        if (step.kind === 'graphile') {
          const result = await graphile.throughput(step.variant, backlog[backlogKind(step)], timeoutMs);
          graphileRuns.push({ variant: step.variant, round, run: result });
          ctx.log(
            `engine: round ${round + 1}/${rounds} ${step.variant.label}: ${formatInt(result.rate)} jobs/s` +
              (result.complete ? '' : ' (timed out)'),
          );
        } else {
          const db = databases.get(step.rules)!;
          const result = await rulebookThroughput(
            db,
            step.scenario,
            backlog[backlogKind(step)],
            round,
            timeoutMs,
            db.statementsAvailable && round === rounds - 1,
          );
          rulebookRuns.push(result);
          ctx.log(
            `engine: round ${round + 1}/${rounds} rulebook (${step.scenario}) ${step.rules} rules: ` +
              `${formatInt(result.run.rate)} events/s, ${formatInt(result.executions)} executions` +
              (result.run.complete ? '' : ' (timed out)'),
          );
        }
      }
    }

    // Issue 11's goal for matched events: 50,000 events with one create_alert each (the 1,000-rule
    // database: 1,000 rows of each of its 50 tables) against graphile-worker at concurrency 10.
    const matched = Number(process.env.BENCH_ENGINE_MATCHED ?? (quick ? 2_000 : 50_000));
    const matchedRuns: { rulebook: RulebookRun; graphile: ThroughputRun }[] = [];
    for (let round = 0; round < (parts.has('matched') ? rounds : 0); round++) {
      const graphileRun = await graphile.throughput(GRAPHILE_C10, matched, timeoutMs * 2);
      const rulebookRun = await rulebookThroughput(
        databases.get(1000)!,
        'b',
        matched,
        round,
        timeoutMs * 2,
        logStatements && databases.get(1000)!.statementsAvailable,
      );
      for (const statement of rulebookRun.statements ?? []) {
        ctx.log(
          `engine: matched statement ${formatInt(statement.calls)} calls, ${formatInt(statement.rows)} rows, ` +
            `${statement.totalMs.toFixed(0)} ms: ${statement.query}`,
        );
      }
      ctx.log(`engine: matched run CPU: ${JSON.stringify(rulebookRun.run.cpu)}`);
      matchedRuns.push({ rulebook: rulebookRun, graphile: graphileRun });
      ctx.log(
        `engine: round ${round + 1}/${rounds} ${formatInt(matched)} matched events: rulebook ` +
          `${formatInt(rulebookRun.run.rate)} events/s, ${GRAPHILE_C10.label} ${formatInt(graphileRun.rate)} jobs/s`,
      );
    }

    const hotRuns: HotRun[] = [];
    const hotWorkloads: readonly HotWorkload[] = ['spread', 'hot', 'alone'];
    for (let round = 0; round < (parts.has('hot') ? rounds : 0); round++) {
      for (const workload of rotate(hotWorkloads, round)) {
        const result = await hotRowRun(databases.get(10)!, workload, round, timeoutMs);
        hotRuns.push(result);
        ctx.log(
          `engine: round ${round + 1}/${rounds} hot rows (${workload}): ${result.seconds.toFixed(2)} s, ` +
            `other rows done at ${result.othersSeconds.toFixed(2)} s` +
            (result.complete ? '' : ' (timed out)'),
        );
      }
    }

    const rulebookLatencies = new Map<string, LatencyStats>();
    for (const rules of parts.has('latency') ? RULE_COUNTS : []) {
      for (const scenario of SCENARIOS) {
        const stats = await rulebookLatency(databases.get(rules)!, scenario, latencyCount, warmup);
        rulebookLatencies.set(`${rules}:${scenario}`, stats);
        ctx.log(
          `engine: latency rulebook (${scenario}) ${rules} rules at ${LATENCY_RATE}/s: ` +
            `p50 ${formatMs(stats.p50)}, p99 ${formatMs(stats.p99)}, ${stats.missing} missing`,
        );
      }
    }
    const graphileLatencies = new Map<string, LatencyStats>();
    for (const variant of parts.has('latency') ? [GRAPHILE_DEFAULT, GRAPHILE_BATCHED] : []) {
      const stats = await graphile.latency(variant, LATENCY_RATE, latencyCount, warmup);
      graphileLatencies.set(variant.key, stats);
      ctx.log(
        `engine: latency ${variant.label} at ${LATENCY_RATE}/s: p50 ${formatMs(stats.p50)}, ` +
          `p99 ${formatMs(stats.p99)}, ${stats.missing} missing`,
      );
    }

    const minutes = (performance.now() - started) / 60_000;
    return {
      title: 'Engine end to end: events per second and latency',
      markdown: report({
        rounds,
        backlog,
        latencySeconds,
        warmup,
        minutes,
        rulebookRuns,
        graphileRuns,
        hotRuns,
        matched,
        matchedRuns,
        rulebookLatencies,
        graphileLatencies,
        statementsAvailable: [...databases.values()].some((db) => db.statementsAvailable),
      }),
    };
  } finally {
    await graphile?.close();
    for (const db of databases.values()) await db.close();
  }
}

interface ReportInput {
  readonly rounds: number;
  readonly backlog: Backlog;
  readonly latencySeconds: number;
  readonly warmup: number;
  readonly minutes: number;
  readonly rulebookRuns: readonly RulebookRun[];
  readonly graphileRuns: readonly GraphileRun[];
  readonly hotRuns: readonly HotRun[];
  readonly matched: number;
  readonly matchedRuns: readonly { rulebook: RulebookRun; graphile: ThroughputRun }[];
  readonly rulebookLatencies: ReadonlyMap<string, LatencyStats>;
  readonly graphileLatencies: ReadonlyMap<string, LatencyStats>;
  readonly statementsAvailable: boolean;
}

function report(input: ReportInput): string {
  const { rulebookRuns, graphileRuns, rounds } = input;
  const warnings: string[] = [];
  for (const run of rulebookRuns) {
    const expected = run.scenario === 'b' ? run.run.items : 0;
    if (!run.run.complete)
      warnings.push(`rulebook (${run.scenario}) ${run.rules} rules, round ${run.round + 1}: timed out`);
    if (run.executions !== expected || run.alerts !== expected) {
      warnings.push(
        `rulebook (${run.scenario}) ${run.rules} rules, round ${run.round + 1}: ${run.executions} executions and ` +
          `${run.alerts} alerts for ${run.run.items} events (expected ${expected})`,
      );
    }
  }
  for (const run of graphileRuns) {
    if (!run.run.complete) warnings.push(`${run.variant.label}, round ${run.round + 1}: timed out`);
  }

  const graphileRate = (variant: GraphileVariant, round: number) =>
    graphileRuns.find((run) => run.variant === variant && run.round === round)?.run.rate ?? Number.NaN;
  const rulebookOf = (rules: RuleCount, scenario: Scenario) =>
    rulebookRuns.filter((run) => run.rules === rules && run.scenario === scenario);
  /** Median over rounds of the ratio to a figure measured in the same round. */
  const paired = (runs: readonly { round: number; run: ThroughputRun }[], base: (round: number) => number) =>
    median(runs.map((run) => run.run.rate / base(run.round)));
  const medianRate = (runs: readonly { run: ThroughputRun }[]) => median(runs.map((run) => run.run.rate));

  const targets: Target[] = [];
  const rows: string[][] = [];
  const latencyCell = (stats: LatencyStats | undefined) =>
    stats ? `${formatMs(stats.p50)} / ${formatMs(stats.p99)}` : '—';
  for (const scenario of SCENARIOS) {
    for (const rules of RULE_COUNTS) {
      const runs = rulebookOf(rules, scenario);
      const vsDefault = paired(runs, (round) => graphileRate(GRAPHILE_DEFAULT, round));
      const vsBatched = paired(runs, (round) => graphileRate(GRAPHILE_BATCHED, round));
      const latency = input.rulebookLatencies.get(`${rules}:${scenario}`);
      const throughputTarget =
        scenario === 'a'
          ? { ratio: vsBatched, against: 'graphile batched' }
          : { ratio: vsDefault, against: 'graphile default' };
      const throughputOk = throughputTarget.ratio >= 1;
      const latencyOk =
        latency !== undefined && latency.p50 <= 5 && latency.p99 <= 25 && latency.missing === 0;
      const label = `rulebook ${scenario === 'a' ? '(a) no match' : '(b) one alert'}, ${formatInt(rules)} rules`;
      targets.push({
        label: `${label}: ${formatRatio(throughputTarget.ratio)} of ${throughputTarget.against} (target ≥ 1.00x)`,
        ok: throughputOk,
      });
      targets.push({
        label: `${label}: p50 ${formatMs(latency?.p50 ?? Number.NaN)}, p99 ${formatMs(latency?.p99 ?? Number.NaN)} at ${LATENCY_RATE}/s (target p50 ≤ 5 ms, p99 ≤ 25 ms)`,
        ok: latencyOk,
      });
      rows.push([
        label,
        `${formatInt(medianRate(runs))} events/s`,
        formatRatio(vsDefault),
        formatRatio(vsBatched),
        latencyCell(latency),
        `≥ ${throughputTarget.against}: ${verdict(throughputOk)}; latency: ${verdict(latencyOk)}`,
      ]);
    }
  }
  for (const variant of [GRAPHILE_DEFAULT, GRAPHILE_BATCHED]) {
    const runs = graphileRuns.filter((run) => run.variant === variant);
    rows.push([
      variant.label,
      `${formatInt(medianRate(runs))} jobs/s`,
      formatRatio(paired(runs, (round) => graphileRate(GRAPHILE_DEFAULT, round))),
      formatRatio(paired(runs, (round) => graphileRate(GRAPHILE_BATCHED, round))),
      latencyCell(input.graphileLatencies.get(variant.key)),
      'reference',
    ]);
  }
  const mainTable = markdownTable(
    [
      'Run',
      'Throughput',
      'vs graphile default',
      'vs graphile batched',
      `p50 / p99 at ${LATENCY_RATE}/s`,
      'Targets',
    ],
    rows,
    ['left', 'right', 'right', 'right', 'right', 'left'],
  );

  // Per-event cost from 10 to 1,000 rules: paired by round.
  const flatness = (scenario: Scenario) =>
    median(
      rulebookOf(1000, scenario).map(
        (run) =>
          run.run.rate /
          (rulebookOf(10, scenario).find((other) => other.round === run.round)?.run.rate ?? Number.NaN),
      ),
    );
  const flatA = flatness('a');
  const flatB = flatness('b');
  // The same in CPU (this process and the daemon's backends), which the machine's other load
  // disturbs less than wall time.
  const cpuPerEvent = (rules: RuleCount) =>
    median(
      rulebookOf(rules, 'a').map((run) => ((run.run.cpu.node + run.run.cpu.postgres) / run.run.items) * 1000),
    );
  targets.push({
    label:
      `per-event cost flat from 10 to 1,000 rules: (a) throughput with 1,000 rules is ${formatRatio(flatA)} of ` +
      `that with 10 (target ≥ 0.90x; (b): ${formatRatio(flatB)}); CPU per (a) event ` +
      `${formatInt(cpuPerEvent(10))} µs with 10 rules, ${formatInt(cpuPerEvent(1000))} µs with 1,000`,
    ok: flatA >= 0.9,
  });

  // Matched events against graphile-worker at concurrency 10, paired by round.
  const matchedRatio = median(input.matchedRuns.map((run) => run.rulebook.run.rate / run.graphile.rate));
  targets.push({
    label:
      `${formatInt(input.matched)} matched events, one create_alert each (1,000 rules): ` +
      `${formatRatio(matchedRatio)} of ${GRAPHILE_C10.label} (target ≥ 3.00x)`,
    ok: matchedRatio >= 3,
  });
  for (const run of input.matchedRuns) {
    if (!run.rulebook.run.complete || !run.graphile.complete)
      warnings.push(`matched events, round ${run.rulebook.round + 1}: timed out`);
    if (run.rulebook.executions !== run.rulebook.run.items || run.rulebook.alerts !== run.rulebook.run.items)
      warnings.push(
        `matched events, round ${run.rulebook.round + 1}: ${run.rulebook.executions} executions and ` +
          `${run.rulebook.alerts} alerts for ${run.rulebook.run.items} events`,
      );
  }
  const matchedTable = markdownTable(
    ['Run', 'Throughput', 'Node CPU per 1,000', 'PostgreSQL CPU per 1,000', `vs ${GRAPHILE_C10.label}`],
    [
      [
        `rulebook (b), 1,000 rules, ${formatInt(input.matched)} events`,
        `${formatInt(median(input.matchedRuns.map((run) => run.rulebook.run.rate)))} events/s`,
        `${formatInt(median(input.matchedRuns.map((run) => (run.rulebook.run.cpu.node / run.rulebook.run.items) * 1000)))} ms`,
        `${formatInt(median(input.matchedRuns.map((run) => (run.rulebook.run.cpu.postgres / run.rulebook.run.items) * 1000)))} ms`,
        formatRatio(matchedRatio),
      ],
      [
        `${GRAPHILE_C10.label}, ${formatInt(input.matched)} jobs`,
        `${formatInt(median(input.matchedRuns.map((run) => run.graphile.rate)))} jobs/s`,
        `${formatInt(median(input.matchedRuns.map((run) => (run.graphile.cpu.node / run.graphile.items) * 1000)))} ms`,
        `${formatInt(median(input.matchedRuns.map((run) => (run.graphile.cpu.postgres / run.graphile.items) * 1000)))} ms`,
        '1.00x',
      ],
    ],
    ['left', 'right', 'right', 'right', 'right'],
  );

  // Hot rows: ratios paired by round.
  const hotOf = (workload: HotWorkload) => input.hotRuns.filter((run) => run.workload === workload);
  const pairedHot = (
    workload: HotWorkload,
    against: HotWorkload,
    figure: (run: HotRun, base: HotRun) => number,
  ) =>
    median(
      hotOf(workload).map((run) => {
        const base = hotOf(against).find((other) => other.round === run.round);
        return base ? figure(run, base) : Number.NaN;
      }),
    );
  const hotDrain = pairedHot(
    'hot',
    'spread',
    (run, base) => run.events / run.seconds / (base.events / base.seconds),
  );
  const hotOthers = pairedHot('hot', 'alone', (run, base) => run.othersSeconds / base.othersSeconds);
  targets.push({
    label: `hot row: drains at ${formatRatio(hotDrain)} the rate of the same number of events over as many rows (target ≥ 0.80x)`,
    ok: hotDrain >= 0.8,
  });
  targets.push({
    label: `hot row: the other rows finish ${formatRatio(hotOthers)} later than alone (target ≤ 1.20x)`,
    ok: hotOthers <= 1.2,
  });
  for (const run of input.hotRuns) {
    if (!run.complete) warnings.push(`hot rows (${run.workload}), round ${run.round + 1}: timed out`);
  }
  const hotTable = markdownTable(
    ['Workload', 'Events', 'All handled', 'Rate', 'Other rows handled'],
    (['spread', 'hot', 'alone'] as const).map((workload) => {
      const runs = hotOf(workload);
      const seconds = median(runs.map((run) => run.seconds));
      return [
        workload === 'spread'
          ? `${formatInt(HOT_UPDATES * 2)} rows once`
          : workload === 'hot'
            ? `one row ${formatInt(HOT_UPDATES)} times, then ${formatInt(HOT_UPDATES)} other rows once`
            : `the ${formatInt(HOT_UPDATES)} other rows alone`,
        formatInt(runs[0]?.events ?? 0),
        `${seconds.toFixed(2)} s`,
        `${formatInt(median(runs.map((run) => run.events / run.seconds)))} events/s`,
        `${median(runs.map((run) => run.othersSeconds)).toFixed(2)} s`,
      ];
    }),
    ['left', 'right', 'right', 'right', 'right'],
  );

  // CPU per event.
  const cpuRows: string[][] = [];
  const cpuRow = (label: string, runs: readonly { run: ThroughputRun }[]) => {
    const per1000 = (pick: (run: ThroughputRun) => number) =>
      median(runs.map((run) => (pick(run.run) / run.run.items) * 1000));
    cpuRows.push([
      label,
      `${formatInt(per1000((run) => run.seconds * 1000))} ms`,
      `${formatInt(per1000((run) => run.cpu.node))} ms`,
      `${formatInt(per1000((run) => run.cpu.postgres))} ms`,
      formatPercent(median(runs.map((run) => run.run.cpu.machineBusy))),
    ]);
  };
  for (const scenario of SCENARIOS) {
    for (const rules of RULE_COUNTS) {
      cpuRow(`rulebook (${scenario}), ${formatInt(rules)} rules`, rulebookOf(rules, scenario));
    }
  }
  for (const variant of [GRAPHILE_DEFAULT, GRAPHILE_BATCHED]) {
    cpuRow(
      variant.label,
      graphileRuns.filter((run) => run.variant === variant),
    );
  }
  const cpuTable = markdownTable(
    ['Run', 'Wall time', 'Node CPU (this process)', 'PostgreSQL backends CPU', 'Machine busy (2 CPUs)'],
    cpuRows,
    ['left', 'right', 'right', 'right', 'right'],
  );

  const latencyRows: string[][] = [];
  const latencyRow = (label: string, measured: string, stats: LatencyStats | undefined) => {
    if (!stats) return;
    latencyRows.push([
      label,
      measured,
      `${stats.rate.toFixed(0)}/s`,
      formatInt(stats.measured),
      formatInt(stats.missing),
      formatMs(stats.p50),
      formatMs(stats.p90),
      formatMs(stats.p99),
      formatMs(stats.max),
    ]);
  };
  for (const scenario of SCENARIOS) {
    for (const rules of RULE_COUNTS) {
      latencyRow(
        `rulebook (${scenario}), ${formatInt(rules)} rules`,
        scenario === 'a' ? 'commit → commit removing the event' : 'commit → commit of the execution row',
        input.rulebookLatencies.get(`${rules}:${scenario}`),
      );
    }
  }
  for (const variant of [GRAPHILE_DEFAULT, GRAPHILE_BATCHED]) {
    latencyRow(variant.label, 'add_job commit → task start', input.graphileLatencies.get(variant.key));
  }
  const latencyTable = markdownTable(
    ['Run', 'Measured', 'Writes', 'Measured writes', 'Missing', 'p50', 'p90', 'p99', 'max'],
    latencyRows,
    ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );

  const rawRows = [
    ...rulebookRuns.map((run) => [
      `rulebook (${run.scenario}), ${formatInt(run.rules)} rules`,
      String(run.round + 1),
      formatInt(run.run.items),
      `${run.run.seconds.toFixed(2)} s`,
      `${formatInt(run.run.rate)}/s`,
      formatInt(run.executions),
    ]),
    ...graphileRuns.map((run) => [
      run.variant.label,
      String(run.round + 1),
      formatInt(run.run.items),
      `${run.run.seconds.toFixed(2)} s`,
      `${formatInt(run.run.rate)}/s`,
      '—',
    ]),
  ];
  const rawTable = markdownTable(['Run', 'Round', 'Events or jobs', 'Time', 'Rate', 'Executions'], rawRows, [
    'left',
    'right',
    'right',
    'right',
    'right',
    'right',
  ]);

  const statementSections = rulebookRuns
    .filter((run) => run.statements)
    .map(
      (run) =>
        `rulebook (${run.scenario}), ${formatInt(run.rules)} rules, round ${run.round + 1} ` +
        `(${formatInt(run.run.items)} events in ${run.run.seconds.toFixed(2)} s):\n\n` +
        markdownTable(
          ['Statement', 'Calls', 'Rows', 'Total ms'],
          run.statements!.map((s) => [
            `\`${s.query}\``,
            formatInt(s.calls),
            formatInt(s.rows),
            s.totalMs.toFixed(0),
          ]),
          ['left', 'right', 'right', 'right'],
        ),
    );

  return `rulebook's daemon and graphile-worker ${graphileVersion()} run in this Node process against the same
PostgreSQL server, in the same run, on the same machine. Tables bench.e01..e50 (id bigint primary key, status, amount
numeric, n int; ${formatInt(ROWS)} rows each) are registered entities. Two rule sets, each in its own database:
**10 rules** (one on each of e01..e10) and **1,000 rules** (20 on each of the 50 tables). On each table the first
rule is \`status changed_to 'shipped'\`, the others \`status changed\` and \`amount greater_than 1e12\` (never true);
every rule has one create_alert action (templated title and message, one recipient in core.users).

- **(a)** sets status to 'packed': every update is captured (rules watch status) and no rule matches.
- **(b)** sets status to 'shipped': exactly one rule matches each event and writes one alert.

**Throughput.** The daemon (\`new Engine({ concurrency: ${ENGINE_SETTINGS.concurrency}, batchSize: ${ENGINE_SETTINGS.batchSize} })\`,
silent logger) is started and left idle; then a backlog of rows spread evenly over the tables with rules is updated
in one transaction. The clock starts when that transaction has committed and stops when \`workflow.events\` is seen
empty (polled every 10 ms). graphile-worker gets the same treatment: the runner is started and idle, then
\`graphile_worker.add_jobs\` queues a backlog of jobs of a task that does nothing, in one transaction, and the clock
stops when its job table is seen empty. ${GRAPHILE_DEFAULT.label}: ${GRAPHILE_DEFAULT.describe};
${GRAPHILE_BATCHED.label}: ${GRAPHILE_BATCHED.describe}. Backlogs: ${formatInt(input.backlog.fast)} for (a) and
graphile batched, ${formatInt(input.backlog.slow)} for (b) and graphile default (the slow runs, kept shorter). Before
every run the tables are reset, vacuumed and a CHECKPOINT is taken. ${rounds} round${rounds === 1 ? '' : 's'}, the order rotating each round; figures are medians,
and a ratio is the median of each round's ratio to the figure measured in the same round.

**Latency at ${LATENCY_RATE}/s.** One writer connection issues single-row updates (one transaction each) at a steady
${LATENCY_RATE} a second for ${input.latencySeconds} s after ${input.warmup} warm-up writes, while the daemon is idle
and woken by NOTIFY. The writer's commit time is when its UPDATE returns. For (b) the end is the commit of the
execution row: a statement-level trigger on workflow.automation_executions added for these runs sends a NOTIFY, which
PostgreSQL delivers when the daemon's transaction commits; for (a), which writes no execution row, the same kind of
trigger on the DELETE from workflow.events (the same transaction that would hold the execution row). The time the
NOTIFY reaches this process is the end, so the figure includes one notification delivery (well under a millisecond
on loopback) and whatever the shared event loop adds. graphile-worker's figure is from add_job's commit to the start
of the task (its own notion of latency, not its completion), as in the issue.

### Results

${mainTable}

### Targets

${targets.map((target) => `- ${verdict(target.ok)} ${target.label}`).join('\n')}
${warnings.length ? `\n**Warnings:**\n\n${warnings.map((w) => `- ${w}`).join('\n')}\n` : ''}
### Matched events against graphile-worker at concurrency 10

${formatInt(input.matched)} events, each matching one rule with one create_alert (the 1,000-rule database), queued in
one transaction while the daemon idles, as in the throughput runs above; graphile-worker (${GRAPHILE_C10.describe})
runs as many jobs of a task that does nothing. ${rounds} round${rounds === 1 ? '' : 's'}, medians; the ratio is the median of each round's.

${matchedTable}

### Hot rows

The 10-rule database; updates that are captured (they change status) and match no rule, so that these runs measure
how the queue is claimed. All writes commit (one transaction per update of the hot row) before the daemon starts;
the clock starts with it and stops when \`workflow.events\` is empty; "other rows handled" is when no event of a
row other than the hot one is left. Same daemon settings; medians of ${rounds} round${rounds === 1 ? '' : 's'}.

${hotTable}

### CPU per 1,000 events or jobs (throughput runs, medians)

Node CPU is this whole process (daemon or worker, plus the benchmark's 10 ms poll); PostgreSQL CPU is the client
backends serving the database under test (not the WAL writer, checkpointer or the benchmark's own connections).
The machine figure includes everything else running on it.

${cpuTable}

### Latency detail

${latencyTable}

<details><summary>Every throughput run</summary>

${rawTable}

</details>
${
  statementSections.length
    ? `\n<details><summary>pg_stat_statements, last round</summary>\n\n${statementSections.join('\n\n')}\n\n</details>\n`
    : input.statementsAvailable
      ? ''
      : '\n(pg_stat_statements is not loaded on this server, so there is no per-statement breakdown.)\n'
}
The whole section took ${input.minutes.toFixed(1)} minutes.`;
}
