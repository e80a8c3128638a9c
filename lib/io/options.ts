// Checks of lib/io's numeric options, with Node's error codes.
import { invalidArgType, outOfRange } from '../errors';

/** An integer option in [min, max]; `fallback` when undefined. */
export function integerOption(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isSafeInteger(value) || value < min || value > max) throw outOfRange(name, `an integer >= ${min} && <= ${max}`, value);
  return value;
}
