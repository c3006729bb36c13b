import { Counter, Gauge, Histogram, MetricsRegistry } from '../metrics/registry.js';

/** What the engine counts; served on GET /metrics. */
export class EngineMetrics {
  readonly registry = new MetricsRegistry();
  readonly eventsProcessed = this.registry.add(
    new Counter('rulebook_events_processed_total', 'Captured events handled and removed from the outbox'),
  );
  readonly eventsFailed = this.registry.add(
    new Counter(
      'rulebook_events_failed_total',
      'Failed attempts to handle an event, by resulting state',
      'state',
    ),
  );
  readonly executions = this.registry.add(
    new Counter('rulebook_executions_total', 'Rule executions by status', 'status'),
  );
  readonly actionDuration = this.registry.add(
    new Histogram('rulebook_action_duration_seconds', 'Time spent in each action, by action type', 'type'),
  );
  readonly eventLag = this.registry.add(
    new Histogram(
      'rulebook_event_lag_seconds',
      'From capture to the start of handling',
      undefined,
      [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30, 60],
    ),
  );
  /** Seconds between the oldest handled event's capture and its handling, last batch. */
  lastLagSeconds = 0;
  /** Rules and actions of the loaded rule set that could not be loaded (see RuleLoadProblem). */
  ruleLoadProblems = 0;
  readonly ruleLoadProblemsGauge = this.registry.add(
    new Gauge(
      'rulebook_rule_load_problems',
      'Active rules and actions that could not be loaded; each fails wherever it would have run',
    ),
  );

  constructor() {
    this.registry.collect(() => this.ruleLoadProblemsGauge.set(this.ruleLoadProblems));
  }
}
