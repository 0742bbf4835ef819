/** The part of s3rver (which ships no types) that stagefs uses. */
declare module 's3rver' {
  import type { Server } from 'node:http';

  interface S3rverOptions {
    address?: string;
    port?: number;
    directory: string;
    silent?: boolean;
    configureBuckets?: Array<{ name: string }>;
  }

  class S3rver {
    constructor(options: S3rverOptions);
    httpServer: Server;
    store: InstanceType<typeof import('s3rver/lib/stores/filesystem')>;
    run(): Promise<{ address: string; port: number }>;
    close(): Promise<void>;
  }

  export = S3rver;
}

declare module 's3rver/lib/stores/filesystem' {
  class FilesystemStore {
    getBucketPath(bucket: string): string;
    getMetadata(bucket: string, key: string): Promise<Record<string, string>>;
    listObjects(bucket: string, options: Record<string, unknown>): Promise<unknown>;
  }
  export = FilesystemStore;
}

declare module 's3rver/lib/models/object' {
  class S3Object {
    constructor(bucket: string, key: string, content: null, metadata: Record<string, string>);
    static ALLOWED_METADATA: string[];
  }
  export = S3Object;
}

declare module 's3rver/lib/models/error' {
  class S3Error extends Error {
    constructor(code: string, message: string, detail?: Record<string, string>);
  }
  export = S3Error;
}

declare module 's3rver/lib/models/account' {
  interface Account {
    accessKeys: Map<string, string>;
  }
  const AWSAccount: { registry: Map<string, Account> };
  export = AWSAccount;
}
