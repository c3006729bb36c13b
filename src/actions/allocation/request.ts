import { ActionError, type ActionContext } from '../types.js';
import { describeRelation, parameterText, requireColumn } from '../relation-catalog.js';
import { catalogType, compile, sql } from '../../db/sql.js';
import { ACTION, type AllocationConfig, type RequestSource } from './config.js';
import { decimalText, isPositiveDecimal } from './quantity.js';
import { sqlState } from '../../sql-state.js';

/** One product and the quantity wanted of it (decimal text). */
export interface RequestLine {
  readonly product: string;
  readonly quantity: string;
}

export interface Request {
  readonly lines: RequestLine[];
  readonly warnings: string[];
}

/** Lines of zero or less are left out with a warning; what is left is allocated. */
function keepPositive(lines: RequestLine[], warnings: string[]): RequestLine[] {
  return lines.filter((line) => {
    if (isPositiveDecimal(line.quantity)) return true;
    warnings.push(`product ${line.product}: requested quantity ${line.quantity} is not positive; skipped`);
    return false;
  });
}

function fromRow(context: ActionContext, source: Extract<RequestSource, { kind: 'row' }>): Request {
  const event = context.event;
  const row = event.operation === 'on_delete' ? event.oldRow : event.newRow;
  if (!row) throw new ActionError(`${ACTION}: the triggering event carries no row`);
  if (!Object.hasOwn(row, source.productField)) {
    throw new ActionError(
      `${ACTION}: the triggering row has no field "${source.productField}" (config.request.product_field)`,
    );
  }
  if (!Object.hasOwn(row, source.quantityField)) {
    throw new ActionError(
      `${ACTION}: the triggering row has no field "${source.quantityField}" (config.request.quantity_field)`,
    );
  }
  const product = row[source.productField];
  if (product === null || product === undefined) {
    throw new ActionError(
      `${ACTION}: the triggering row's ${source.productField} is null: no product to allocate`,
    );
  }
  const raw = row[source.quantityField];
  const quantity = decimalText(raw);
  if (quantity === undefined) {
    throw new ActionError(
      `${ACTION}: the triggering row's ${source.quantityField} is ${JSON.stringify(raw)}, not a quantity`,
    );
  }
  const warnings: string[] = [];
  const productText = typeof product === 'string' ? product : JSON.stringify(product);
  return { lines: keepPositive([{ product: productText, quantity }], warnings), warnings };
}

async function fromLines(
  context: ActionContext,
  source: Extract<RequestSource, { kind: 'lines' }>,
): Promise<Request> {
  const client = context.client;
  const relation = await describeRelation(client, source.table);
  if (!relation) {
    throw new ActionError(
      `${ACTION}: config.request.lines_table "${source.table}" is not an existing table or view`,
    );
  }
  const product = requireColumn(relation, source.productColumn, 'config.request.product_column', ACTION);
  const quantity = requireColumn(relation, source.quantityColumn, 'config.request.quantity_column', ACTION);
  if (quantity.category !== 'N') {
    throw new ActionError(
      `${ACTION}: config.request.quantity_column "${quantity.name}" must be a number, but it is ${quantity.type}`,
    );
  }
  const match = context.renderValue(source.match) as Record<string, unknown>;
  const conditions = Object.entries(match).map(([name, value]) => {
    const column = requireColumn(relation, name, 'config.request.match', ACTION);
    if (value === null || value === undefined) return sql`${sql.ident('l', column.name)} is null`;
    return sql`${sql.ident('l', column.name)} = ${parameterText(value, column)}::${catalogType(column.type)}`;
  });
  const productColumn = sql.ident('l', product.name);
  let rows: { product: string | null; quantity: string | null; lines: number }[];
  try {
    rows = (
      await client.query<{ product: string | null; quantity: string | null; lines: number }>(
        compile(
          sql`select ${productColumn}::text as product, sum(${sql.ident('l', quantity.name)})::text as quantity,
                     count(*)::int as lines
                from ${sql.ident(relation.schema, relation.name)} as l
               where ${sql.join(conditions, sql` and `)}
               group by ${productColumn}
               order by ${productColumn}`,
        ),
      )
    ).rows;
  } catch (error) {
    if (sqlState(error)?.startsWith('22')) {
      throw new ActionError(`${ACTION}: config.request.match: ${(error as Error).message}`);
    }
    throw error;
  }
  const warnings: string[] = [];
  const lines: RequestLine[] = [];
  for (const row of rows) {
    if (row.product === null) {
      throw new ActionError(
        `${ACTION}: ${row.lines} line(s) of ${relation.schema}.${relation.name} have no ${product.name}: no product to allocate`,
      );
    }
    if (row.quantity === null) {
      warnings.push(`product ${row.product}: the lines have no ${quantity.name}; skipped`);
      continue;
    }
    lines.push({ product: row.product, quantity: row.quantity });
  }
  if (rows.length === 0) {
    warnings.push(`no lines of ${relation.schema}.${relation.name} match ${JSON.stringify(match)}`);
  }
  return { lines: keepPositive(lines, warnings), warnings };
}

/** The products and quantities to allocate, one line per product. */
export async function readRequest(context: ActionContext, config: AllocationConfig): Promise<Request> {
  return config.request.kind === 'row'
    ? fromRow(context, config.request)
    : fromLines(context, config.request);
}
