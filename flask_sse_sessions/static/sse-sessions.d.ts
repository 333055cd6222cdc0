export declare function connect(url: string): unknown;
