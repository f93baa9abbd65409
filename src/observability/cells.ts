import { Histogram } from 'prom-client'
import type { HistogramConfiguration, LabelValues, MetricObjectWithValues, MetricValueWithName, ObserveDataWithExemplar } from 'prom-client'

/*
 * Data-path metric updates that cost an addition.
 *
 * A prom-client child (`metric.labels(...)`) hashes its label set into a string, validates it and
 * returns a result object on every `inc()`; a histogram child also allocates a closure and an object
 * per `observe()`. On the fast lane that was about 5% of a proxied request's CPU time
 * (`npm run bench:profile`) and a steady source of garbage. A cell keeps the running count as a plain
 * number instead: counters and gauges hand it to their prom-client metric when the registry is read
 * (the metric's `collect`, once per scrape), and CellHistogram keeps its series in cells outright.
 * The exposition (text and JSON, so the workers' AggregatorRegistry merges them) is unchanged.
 */

/** A counter series' increments not yet added to its metric. */
export class CounterCell {
  pending = 0
  inc(by = 1): void {
    this.pending += by
  }
}

/** A gauge series' net change not yet applied to its metric. */
export class GaugeCell extends CounterCell {
  dec(by = 1): void {
    this.pending -= by
  }
}

/** One histogram series: per-bucket counts (not cumulative; the last slot is above every bound), sum and count. */
export class HistogramCell {
  readonly counts: Float64Array
  sum = 0
  count = 0
  readonly #bounds: readonly number[]

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds
    this.counts = new Float64Array(bounds.length + 1)
  }

  observe(value: number): void {
    const bounds = this.#bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    this.counts[i] = this.counts[i]! + 1
    this.sum += value
    this.count++
  }
}

type Value = MetricValueWithName<string> & { sharedLabels?: LabelValues<string>; exemplar?: null }

/**
 * A prom-client Histogram whose series are HistogramCells. `cell(labels)` is bound once (per service)
 * and observed on the data path; `observe`, `labels` and `zero` still work for anyone else. Output
 * matches prom-client's own histogram line for line.
 */
export class CellHistogram<T extends string> extends Histogram<T> {
  readonly #bounds: readonly number[]
  readonly #cells = new Map<string, { labels: LabelValues<T>; cell: HistogramCell }>()
  readonly #labelNames: readonly T[]
  readonly #name: string
  readonly #help: string

  constructor(config: HistogramConfiguration<T> & { buckets: number[] }) {
    super(config)
    this.#bounds = [...config.buckets].sort((a, b) => a - b)
    this.#labelNames = config.labelNames ?? []
    this.#name = config.name
    this.#help = config.help
    // prom-client's constructor sets `observe` on the instance, which would hide the method below.
    Reflect.deleteProperty(this, 'observe')
  }

  #key(labels: LabelValues<T>): string {
    let key = ''
    for (const name of this.#labelNames) key += `${String(labels[name] ?? '')}\u0000`
    return key
  }

  /** prom-client's two ways to name a series: one labels object, or the values in labelNames order. */
  #labelsOf(args: readonly unknown[]): LabelValues<T> {
    const [first] = args
    if (args.length === 1 && typeof first === 'object' && first !== null) return first
    return Object.fromEntries(this.#labelNames.map((n, i) => [n, args[i]])) as LabelValues<T>
  }

  /** The series of `labels`, created (at zero) on first use. */
  cell(labels: LabelValues<T>): HistogramCell {
    const key = this.#key(labels)
    let entry = this.#cells.get(key)
    if (entry === undefined) {
      for (const name of Object.keys(labels)) if (!this.#labelNames.includes(name as T)) throw new Error(`Added label "${name}" is not included in initial labelset: ${JSON.stringify(this.#labelNames)}`)
      entry = { labels: { ...labels }, cell: new HistogramCell(this.#bounds) }
      this.#cells.set(key, entry)
    }
    return entry.cell
  }

  override observe(value: number): void
  override observe(labels: LabelValues<T>, value: number): void
  override observe(data: ObserveDataWithExemplar<T>): void
  override observe(arg: LabelValues<T> | ObserveDataWithExemplar<T> | number, value?: number): void {
    if (typeof arg === 'number') this.cell({}).observe(arg)
    else if (value !== undefined) this.cell(arg as LabelValues<T>).observe(value)
    else this.cell((arg as ObserveDataWithExemplar<T>).labels ?? {}).observe((arg as ObserveDataWithExemplar<T>).value)
  }

  override labels(...args: unknown[]): ReturnType<Histogram<T>['labels']> {
    const cell = this.cell(this.#labelsOf(args))
    return {
      observe: (value: number) => cell.observe(value),
      startTimer: () => {
        const start = performance.now()
        return () => {
          const seconds = (performance.now() - start) / 1000
          cell.observe(seconds)
          return seconds
        }
      },
    }
  }

  override zero(labels: LabelValues<T>): void {
    this.cell(labels)
  }

  override remove(...args: unknown[]): void {
    this.#cells.delete(this.#key(this.#labelsOf(args)))
  }

  override reset(): void {
    // prom-client's constructor calls reset() before this class's fields exist.
    if (#cells in this) this.#cells.clear()
  }

  /** The registry's text exposition reads this (prom-client's shape: series labels as sharedLabels). */
  getForPromString(): Promise<MetricObjectWithValues<Value>> {
    const values: Value[] = []
    const bucket = `${this.#name}_bucket`
    for (const { labels, cell } of this.#cells.values()) {
      let cumulative = 0
      for (let i = 0; i < this.#bounds.length; i++) {
        cumulative += cell.counts[i]!
        values.push({ labels: { le: this.#bounds[i]! }, sharedLabels: labels, value: cumulative, metricName: bucket, exemplar: null })
      }
      values.push(
        { labels: { le: '+Inf' }, sharedLabels: labels, value: cell.count, metricName: bucket, exemplar: null },
        { labels: {}, sharedLabels: labels, value: cell.sum, metricName: `${this.#name}_sum`, exemplar: undefined },
        { labels: {}, sharedLabels: labels, value: cell.count, metricName: `${this.#name}_count`, exemplar: undefined },
      )
    }
    // The same keys as prom-client's (no `collect`: this metric has nothing to collect).
    return Promise.resolve({ name: this.#name, help: this.#help, type: 'histogram', values, aggregator: 'sum' } as unknown as MetricObjectWithValues<Value>)
  }

  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<T>>> {
    const data = await this.getForPromString()
    const values = data.values.map(({ sharedLabels, labels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } }))
    return { ...data, values } as MetricObjectWithValues<MetricValueWithName<T>>
  }
}
