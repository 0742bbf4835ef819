/** Waiting for a state a mount reaches on its own time (an upload, a fetch ahead, an index flush). */
import { sleep } from '../../src/util/deferred';

/**
 * Whether `check` holds within `timeoutMs`, asked every `intervalMs`. Only for states that, once
 * reached, stay: a deadline, never a timed assertion.
 */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(intervalMs)) {
    if (await check()) return true;
  }
  return check();
}
