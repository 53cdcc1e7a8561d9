// Runs tasks concurrently, at most `window` at a time, and hands their results over in the
// order they were added: the output file is written front to back while workers overlap.

export class OrderedPipeline<T> {
  private readonly pending: Promise<T>[] = [];
  private failed: unknown;

  constructor(
    private readonly window: number,
    private readonly consume: (result: T) => Promise<void>,
  ) {}

  /** Starts a task; waits (consuming finished results in order) while the window is full. */
  async add(task: () => Promise<T>): Promise<void> {
    if (this.failed !== undefined) throw this.failed;
    const p = task();
    // A failure is reported when its turn comes; until then it must not be an unhandled rejection.
    p.catch((e) => {
      this.failed ??= e;
    });
    this.pending.push(p);
    while (this.pending.length >= this.window) await this.consumeOne();
  }

  /** Consumes everything still in flight. */
  async drain(): Promise<void> {
    while (this.pending.length > 0) await this.consumeOne();
  }

  /** Waits for tasks in flight to settle, ignoring their results (after a failure or a cancel). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.pending.splice(0));
  }

  private async consumeOne(): Promise<void> {
    const result = await this.pending[0]!;
    this.pending.shift();
    await this.consume(result);
  }
}
