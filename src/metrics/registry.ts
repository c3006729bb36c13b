/**
 * A small Prometheus text-format registry: counters, gauges and histograms with at most one label.
 * Everything GET /metrics serves is rendered here, so label values are escaped in one place.
 */

interface Metric {
  render(): string;
}

/** A label value as the exposition format wants it: backslash, double quote and newline escaped. */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function header(name: string, help: string, type: string): string[] {
  // HELP text escapes backslash and newline (not quotes) in the exposition format.
  return [`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`];
}

function labels(label: string | undefined, labelValue: string): string {
  return label ? `{${label}="${escapeLabel(labelValue)}"}` : '';
}

export class Counter implements Metric {
  readonly #values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly label?: string,
  ) {}

  inc(labelValue = '', by = 1): void {
    this.#values.set(labelValue, (this.#values.get(labelValue) ?? 0) + by);
  }

  value(labelValue = ''): number {
    return this.#values.get(labelValue) ?? 0;
  }

  render(): string {
    const lines = header(this.name, this.help, 'counter');
    if (this.#values.size === 0 && !this.label) lines.push(`${this.name} 0`);
    for (const [labelValue, value] of this.#values) {
      lines.push(`${this.name}${labels(this.label, labelValue)} ${value}`);
    }
    return lines.join('\n');
  }
}

/**
 * A value that goes up and down. Without a label it starts at 0; with one it shows the series last
 * `replace`d (a set read from the database at each scrape, where a state that disappeared must go).
 */
export class Gauge implements Metric {
  #values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly label?: string,
  ) {
    if (!label) this.#values.set('', 0);
  }

  set(value: number, labelValue = ''): void {
    this.#values.set(labelValue, value);
  }

  /** Every series at once: those not in `values` are dropped. */
  replace(values: Iterable<readonly [string, number]>): void {
    this.#values = new Map(values);
  }

  value(labelValue = ''): number | undefined {
    return this.#values.get(labelValue);
  }

  render(): string {
    const lines = header(this.name, this.help, 'gauge');
    for (const [labelValue, value] of this.#values) {
      lines.push(`${this.name}${labels(this.label, labelValue)} ${value}`);
    }
    return lines.join('\n');
  }
}

const DEFAULT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Histogram implements Metric {
  readonly #series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly label?: string,
    readonly buckets: readonly number[] = DEFAULT_BUCKETS,
  ) {}

  observe(labelValue: string, seconds: number): void {
    let series = this.#series.get(labelValue);
    if (!series) {
      series = { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(labelValue, series);
    }
    for (let i = 0; i < this.buckets.length; i++) if (seconds <= this.buckets[i]!) series.counts[i]!++;
    series.sum += seconds;
    series.count++;
  }

  render(): string {
    const lines = header(this.name, this.help, 'histogram');
    for (const [labelValue, series] of this.#series) {
      const label = this.label ? `${this.label}="${escapeLabel(labelValue)}",` : '';
      this.buckets.forEach((bound, i) =>
        lines.push(`${this.name}_bucket{${label}le="${bound}"} ${series.counts[i]}`),
      );
      lines.push(`${this.name}_bucket{${label}le="+Inf"} ${series.count}`);
      const plain = labels(this.label, labelValue);
      lines.push(`${this.name}_sum${plain} ${series.sum}`, `${this.name}_count${plain} ${series.count}`);
    }
    return lines.join('\n');
  }
}

/**
 * The metrics of a process. A collector runs before each render and sets the gauges it owns (counts
 * read from the database); a registry may hold another (the engine's own), rendered in its place.
 */
export class MetricsRegistry {
  readonly #metrics: (Metric | MetricsRegistry)[] = [];
  readonly #collectors: (() => void | Promise<void>)[] = [];

  add<T extends Metric | MetricsRegistry>(metric: T): T {
    this.#metrics.push(metric);
    return metric;
  }

  /** Runs `collect` before every render, so that the gauges it sets are current. */
  collect(collect: () => void | Promise<void>): void {
    this.#collectors.push(collect);
  }

  async #collect(): Promise<void> {
    await Promise.all(this.#collectors.map((collect) => collect()));
    for (const metric of this.#metrics) if (metric instanceof MetricsRegistry) await metric.#collect();
  }

  #renderCollected(): string {
    return this.#metrics
      .map((metric) =>
        metric instanceof MetricsRegistry ? metric.#renderCollected() : metric.render() + '\n',
      )
      .join('');
  }

  /** The Prometheus text exposition (version 0.0.4) of every metric, after running the collectors. */
  async render(): Promise<string> {
    await this.#collect();
    return this.#renderCollected();
  }
}
