/** A small Prometheus text-format registry: counters, gauges and histograms with one label. */

interface Metric {
  render(): string;
}

export function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
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
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.#values.size === 0 && !this.label) lines.push(`${this.name} 0`);
    for (const [labelValue, value] of this.#values) {
      const labels = this.label ? `{${this.label}="${escapeLabel(labelValue)}"}` : '';
      lines.push(`${this.name}${labels} ${value}`);
    }
    return lines.join('\n');
  }
}

export class Gauge implements Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: () => number | Map<string, number>,
    readonly label?: string,
  ) {}

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    const value = this.read();
    if (value instanceof Map) {
      for (const [labelValue, v] of value)
        lines.push(`${this.name}{${this.label}="${escapeLabel(labelValue)}"} ${v}`);
    } else {
      lines.push(`${this.name} ${value}`);
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
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [labelValue, series] of this.#series) {
      const label = this.label ? `${this.label}="${escapeLabel(labelValue)}",` : '';
      this.buckets.forEach((bound, i) =>
        lines.push(`${this.name}_bucket{${label}le="${bound}"} ${series.counts[i]}`),
      );
      lines.push(`${this.name}_bucket{${label}le="+Inf"} ${series.count}`);
      const plain = this.label ? `{${this.label}="${escapeLabel(labelValue)}"}` : '';
      lines.push(`${this.name}_sum${plain} ${series.sum}`, `${this.name}_count${plain} ${series.count}`);
    }
    return lines.join('\n');
  }
}

export class MetricsRegistry {
  readonly #metrics: Metric[] = [];

  add<T extends Metric>(metric: T): T {
    this.#metrics.push(metric);
    return metric;
  }

  render(): string {
    return this.#metrics.map((metric) => metric.render()).join('\n') + '\n';
  }
}
