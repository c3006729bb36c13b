import { ActionError } from './types.js';

/** Typed access to an action's merged config, with errors that name the action and the field. */
export class ConfigReader {
  constructor(
    private readonly actionType: string,
    private readonly config: Readonly<Record<string, unknown>>,
  ) {}

  private fail(field: string, problem: string): never {
    throw new ActionError(`${this.actionType}: config.${field} ${problem}`);
  }

  has(field: string): boolean {
    return this.config[field] !== undefined && this.config[field] !== null;
  }

  raw(field: string): unknown {
    return this.config[field];
  }

  string(field: string): string {
    const value = this.config[field];
    if (typeof value !== 'string' || value === '')
      this.fail(field, 'is required and must be a non-empty string');
    return value;
  }

  optionalString(field: string): string | undefined {
    if (!this.has(field)) return undefined;
    return this.string(field);
  }

  oneOf<T extends string>(field: string, allowed: readonly T[], fallback: T): T {
    if (!this.has(field)) return fallback;
    const value = this.config[field];
    if (typeof value !== 'string' || !allowed.includes(value as T)) {
      this.fail(field, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
    }
    return value as T;
  }

  boolean(field: string, fallback: boolean): boolean {
    if (!this.has(field)) return fallback;
    const value = this.config[field];
    if (typeof value !== 'boolean') this.fail(field, `must be true or false, got ${JSON.stringify(value)}`);
    return value;
  }

  stringArray(field: string): string[] {
    if (!this.has(field)) return [];
    const value = this.config[field];
    if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) {
      this.fail(field, 'must be an array of strings');
    }
    return value as string[];
  }

  object(field: string): Record<string, unknown> | undefined {
    if (!this.has(field)) return undefined;
    const value = this.config[field];
    if (typeof value !== 'object' || Array.isArray(value)) this.fail(field, 'must be a JSON object');
    return value as Record<string, unknown>;
  }
}
