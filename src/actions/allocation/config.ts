import { ConfigReader } from '../config-reader.js';
import { ActionError } from '../types.js';

export const ACTION = 'allocate_inventory';

export const STRATEGIES = ['fifo', 'lifo', 'nearest_expiry', 'lowest_cost'] as const;
export type Strategy = (typeof STRATEGIES)[number];

export const MODES = ['allocate', 'reserve'] as const;
export type Mode = (typeof MODES)[number];

/** Which inventory columns play which part; only product, on_hand and reserved are always required. */
export interface InventoryColumns {
  readonly product: string;
  readonly onHand: string;
  readonly reserved: string;
  /** A separate allocated quantity; when absent, allocations count in `reserved` too. */
  readonly allocated: string | undefined;
  readonly location: string | undefined;
  readonly received: string | undefined;
  readonly expiry: string | undefined;
  readonly unitCost: string | undefined;
  readonly lot: string | undefined;
}

export type RequestSource =
  | { readonly kind: 'row'; readonly productField: string; readonly quantityField: string }
  | {
      readonly kind: 'lines';
      readonly table: string;
      readonly match: Readonly<Record<string, unknown>>;
      readonly productColumn: string;
      readonly quantityColumn: string;
    };

export interface AllocationConfig {
  readonly table: string;
  readonly columns: InventoryColumns;
  readonly request: RequestSource;
  readonly strategy: Strategy;
  readonly mode: Mode;
  readonly reservationHours: number;
  readonly allowPartial: boolean;
  /** Recorded with the result, for rules and people reading it; it does not reorder allocations. */
  readonly priority: unknown;
}

function fail(message: string): never {
  throw new ActionError(`${ACTION}: ${message}`);
}

function requiredString(object: Record<string, unknown>, key: string, where: string): string {
  const value = object[key];
  if (typeof value !== 'string' || value === '')
    fail(`${where}.${key} is required and must be a non-empty string`);
  return value;
}

function optionalString(object: Record<string, unknown>, key: string, where: string): string | undefined {
  const value = object[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value === '') fail(`${where}.${key} must be a non-empty string`);
  return value;
}

function objectAt(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    fail(`${where} must be a JSON object`);
  return value as Record<string, unknown>;
}

const STRATEGY_COLUMN: Record<Strategy, keyof InventoryColumns> = {
  fifo: 'received',
  lifo: 'received',
  nearest_expiry: 'expiry',
  lowest_cost: 'unitCost',
};

const COLUMN_KEY: Record<keyof InventoryColumns, string> = {
  product: 'product',
  onHand: 'on_hand',
  reserved: 'reserved',
  allocated: 'allocated',
  location: 'location',
  received: 'received',
  expiry: 'expiry',
  unitCost: 'unit_cost',
  lot: 'lot',
};

/**
 * Reads and checks an allocate_inventory config (already merged with its template). Templated values
 * are the request's `match` values and `priority`; they are rendered by the caller.
 */
export function readAllocationConfig(raw: Readonly<Record<string, unknown>>): AllocationConfig {
  const config = new ConfigReader(ACTION, raw);
  const inventory = objectAt(config.raw('inventory'), 'config.inventory');
  const table = requiredString(inventory, 'table', 'config.inventory');
  const columnsRaw = objectAt(inventory.columns, 'config.inventory.columns');
  const where = 'config.inventory.columns';
  const columns: InventoryColumns = {
    product: requiredString(columnsRaw, 'product', where),
    onHand: requiredString(columnsRaw, 'on_hand', where),
    reserved: requiredString(columnsRaw, 'reserved', where),
    allocated: optionalString(columnsRaw, 'allocated', where),
    location: optionalString(columnsRaw, 'location', where),
    received: optionalString(columnsRaw, 'received', where),
    expiry: optionalString(columnsRaw, 'expiry', where),
    unitCost: optionalString(columnsRaw, 'unit_cost', where),
    lot: optionalString(columnsRaw, 'lot', where),
  };
  const known = new Set(Object.values(COLUMN_KEY));
  for (const key of Object.keys(columnsRaw)) {
    if (!known.has(key)) fail(`${where} has an unknown key "${key}" (known: ${[...known].join(', ')})`);
  }

  const strategy = config.oneOf('strategy', STRATEGIES, 'fifo');
  const needed = STRATEGY_COLUMN[strategy];
  if (columns[needed] === undefined) {
    fail(`strategy "${strategy}" needs ${where}.${COLUMN_KEY[needed]}`);
  }
  const mode = config.oneOf('mode', MODES, 'allocate');
  let reservationHours = 24;
  if (config.has('reservation_hours')) {
    const hours = config.raw('reservation_hours');
    if (typeof hours !== 'number' || !Number.isFinite(hours) || hours <= 0) {
      fail(`config.reservation_hours must be a positive number, got ${JSON.stringify(hours)}`);
    }
    reservationHours = hours;
  }

  const requestRaw = objectAt(config.raw('request'), 'config.request');
  let request: RequestSource;
  if (requestRaw.lines_table !== undefined) {
    const match = objectAt(requestRaw.match, 'config.request.match');
    if (Object.keys(match).length === 0) {
      fail('config.request.match must name at least one column of the lines table');
    }
    request = {
      kind: 'lines',
      table: requiredString(requestRaw, 'lines_table', 'config.request'),
      match,
      productColumn: requiredString(requestRaw, 'product_column', 'config.request'),
      quantityColumn: requiredString(requestRaw, 'quantity_column', 'config.request'),
    };
  } else if (requestRaw.product_field !== undefined) {
    request = {
      kind: 'row',
      productField: requiredString(requestRaw, 'product_field', 'config.request'),
      quantityField: requiredString(requestRaw, 'quantity_field', 'config.request'),
    };
  } else {
    fail(
      'config.request needs product_field and quantity_field (the triggering row) or lines_table, match, ' +
        'product_column and quantity_column (line items)',
    );
  }

  return {
    table,
    columns,
    request,
    strategy,
    mode,
    reservationHours,
    allowPartial: config.boolean('allow_partial', false),
    priority: config.raw('priority') ?? null,
  };
}
