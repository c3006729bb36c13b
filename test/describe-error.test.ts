import { describe, expect, it } from 'vitest';
import { describeError } from '../src/describe-error.js';

// What the CLI prints after "rulebook: " for failures that are not rulebook's own errors.

function refused(address: string, port: number): Error {
  return Object.assign(new Error(`connect ECONNREFUSED ${address}:${port}`), {
    code: 'ECONNREFUSED',
    address,
    port,
  });
}

describe('describeError', () => {
  it('explains the AggregateError with an empty message that pg throws when every address refuses', () => {
    const error = new AggregateError([refused('::1', 5432), refused('127.0.0.1', 5432)], '');
    expect(error.message).toBe('');
    expect(describeError(error)).toBe(
      'nothing accepts connections at ::1:5432: start PostgreSQL there, or set DATABASE_URL to a running one ' +
        '(unset, rulebook uses its embedded PostgreSQL); nothing accepts connections at 127.0.0.1:5432: start ' +
        'PostgreSQL there, or set DATABASE_URL to a running one (unset, rulebook uses its embedded PostgreSQL)',
    );
  });

  it('never says undefined: rejections without a reason, non-Errors and empty Errors', () => {
    expect(describeError(undefined)).toBe(
      'failed without saying why (a bug in rulebook: please report the command you ran)',
    );
    expect(describeError(null)).toMatch(/^failed without saying why/);
    expect(describeError('disk full')).toBe('disk full');
    expect(describeError({ reason: 'x' })).toBe('{"reason":"x"}');
    expect(describeError(Object.assign(new Error(''), { code: 'EPIPE' }))).toBe(
      'Error EPIPE without a message',
    );
  });

  it('adds what to check to a refused password and a missing database, by SQLSTATE', () => {
    const password = Object.assign(new Error('password authentication failed for user "x"'), {
      code: '28P01',
    });
    expect(describeError(password)).toBe(
      'password authentication failed for user "x": check the user and password in DATABASE_URL',
    );
    const database = Object.assign(new Error('database "nope" does not exist'), { code: '3D000' });
    expect(describeError(database)).toBe(
      'database "nope" does not exist: create it, or correct the database name in DATABASE_URL',
    );
  });

  it('keeps a multi-line message to its first line', () => {
    expect(describeError(new Error('first\n    at somewhere'))).toBe('first');
  });
});
