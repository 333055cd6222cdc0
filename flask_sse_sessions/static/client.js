function connect(url, options) { throw new Error("not built yet"); }
