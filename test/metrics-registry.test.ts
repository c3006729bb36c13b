import { describe, expect, it } from 'vitest';
import { Counter, Gauge, Histogram, MetricsRegistry } from '../src/metrics/registry.js';

/** One sample line of the text exposition: name, optional {label="escaped value",...}, value. */
const SAMPLE = /^[a-z_]+(\{([a-z_]+="(?:[^"\\\n]|\\[\\"n])*",?)+\})? [-+0-9.e]+$/;

function samples(text: string): string[] {
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

describe('the metrics registry', () => {
  const awkward = 'billing."overdue"\nby \\ customer';
  const escaped = 'billing.\\"overdue\\"\\nby \\\\ customer';

  it('escapes backslash, double quote and newline in every kind of label value', async () => {
    const registry = new MetricsRegistry();
    registry.add(new Counter('test_counted_total', 'Counted', 'entity')).inc(awkward);
    registry.add(new Histogram('test_seconds', 'Timed', 'entity', [1])).observe(awkward, 0.5);
    const gauge = registry.add(new Gauge('test_failing', 'Failing', 'entity'));
    registry.collect(() => gauge.replace([[awkward, 1]]));
    const text = await registry.render();

    expect(text).toContain(`test_counted_total{entity="${escaped}"} 1`);
    expect(text).toContain(`test_seconds_bucket{entity="${escaped}",le="1"} 1`);
    expect(text).toContain(`test_seconds_count{entity="${escaped}"} 1`);
    expect(text).toContain(`test_failing{entity="${escaped}"} 1`);
    // The newline inside the value must not start a new line of the exposition.
    for (const line of samples(text)) expect(line).toMatch(SAMPLE);
    expect(text.endsWith('\n')).toBe(true);
  });

  it('runs the collectors of a registry it holds, and shows only the series last read', async () => {
    const inner = new MetricsRegistry();
    let problems = 2;
    const problemsGauge = inner.add(new Gauge('test_problems', 'Problems'));
    inner.collect(() => problemsGauge.set(problems));
    const outer = new MetricsRegistry();
    outer.add(inner);
    const states = outer.add(new Gauge('test_events', 'Events by state', 'state'));
    let read: [string, number][] = [
      ['pending', 3],
      ['dead', 1],
    ];
    outer.collect(async () => {
      await Promise.resolve();
      states.replace(read);
    });

    expect(samples(await outer.render())).toEqual([
      'test_problems 2',
      'test_events{state="pending"} 3',
      'test_events{state="dead"} 1',
    ]);
    problems = 0;
    read = [['pending', 5]];
    expect(samples(await outer.render())).toEqual(['test_problems 0', 'test_events{state="pending"} 5']);
  });

  it('keeps HELP and TYPE lines once per metric, with a newline in the help escaped', async () => {
    const registry = new MetricsRegistry();
    registry.add(new Gauge('test_gauge', 'Two\nlines'));
    expect(await registry.render()).toBe(
      '# HELP test_gauge Two\\nlines\n# TYPE test_gauge gauge\ntest_gauge 0\n',
    );
  });
});
