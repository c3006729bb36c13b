/** Quantities travel as decimal text, so that SQL's numeric does the arithmetic exactly. */
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)$/;

/** A JSON number or numeric text as decimal text, or undefined when it is neither. */
export function decimalText(value: unknown): string | undefined {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return undefined;
    const text = String(value);
    return DECIMAL.test(text) ? text : undefined;
  }
  if (typeof value === 'string') {
    const text = value.trim();
    return DECIMAL.test(text) ? text : undefined;
  }
  return undefined;
}

export function isPositiveDecimal(text: string): boolean {
  return !text.startsWith('-') && /[1-9]/.test(text);
}

export function isIntegralDecimal(text: string): boolean {
  return /^[+-]?\d+(\.0*)?$/.test(text);
}

/** Decimal text from Postgres as a JSON number (exact for the quantities and costs of real stock). */
export function toNumber(text: string | null): number | null {
  return text === null ? null : Number(text);
}
