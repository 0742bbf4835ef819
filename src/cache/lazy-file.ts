/** A file handle opened on first use and shared by every later user until closed. */
import type { StagingFile } from './staged-files';

export class LazyFile {
  private file: Promise<StagingFile> | undefined;

  constructor(private readonly opener: () => Promise<StagingFile>) {}

  get(): Promise<StagingFile> {
    if (!this.file) {
      const opening = this.opener();
      this.file = opening;
      opening.catch(() => {
        if (this.file === opening) this.file = undefined;
      });
    }
    return this.file;
  }

  get isOpen(): boolean {
    return this.file !== undefined;
  }

  async close(): Promise<void> {
    const file = this.file;
    this.file = undefined;
    if (file) await (await file).close();
  }
}
