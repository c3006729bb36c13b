import { valuesEqual } from './compare.js';

type Row = Readonly<Record<string, unknown>>;

/** A captured change to one row: rows are `to_jsonb(row)` of the old and new versions. */
export interface RowChange {
  readonly operation: 'on_create' | 'on_update' | 'on_delete';
  readonly oldRow: Row | null;
  readonly newRow: Row | null;
}

/** The row conditions such as `equals` look at: the new row, or for a delete the old one. */
export function subjectRow(event: RowChange): Row | null {
  return event.operation === 'on_delete' ? event.oldRow : event.newRow;
}

/** A field of a row; missing rows and fields read as undefined, and inherited properties are never read. */
export function fieldValue(row: Row | null, field: string): unknown {
  return row !== null && Object.hasOwn(row, field) ? row[field] : undefined;
}

export function fieldChanged(event: RowChange, field: string): boolean {
  return !valuesEqual(fieldValue(event.oldRow, field), fieldValue(event.newRow, field));
}

/** Keys whose values differ (by {@link valuesEqual}) between the old and new row; a missing key reads as null. */
export function fieldsChanged(event: RowChange): string[] {
  const changed: string[] = [];
  forEachChangedField(event, (field) => {
    changed.push(field);
    return false;
  });
  return changed;
}

const stopAtFirst = (): boolean => true;

export function anyFieldChanged(event: RowChange): boolean {
  return forEachChangedField(event, stopAtFirst);
}

/** Calls `visit` for each changed field until it returns true; returns whether it did. */
function forEachChangedField(event: RowChange, visit: (field: string) => boolean): boolean {
  const { oldRow, newRow } = event;
  if (newRow !== null) {
    for (const field in newRow) {
      if (Object.hasOwn(newRow, field) && fieldChanged(event, field) && visit(field)) return true;
    }
  }
  if (oldRow !== null) {
    for (const field in oldRow) {
      const onlyInOldRow = Object.hasOwn(oldRow, field) && !(newRow !== null && Object.hasOwn(newRow, field));
      if (onlyInOldRow && fieldChanged(event, field) && visit(field)) return true;
    }
  }
  return false;
}
