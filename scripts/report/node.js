// scripts/report.sh's Node.js client: runs load.js's `run` and prints its figures as one JSON line.
//   node node.js BASE_URL API_KEY MODE SECONDS CONCURRENCY [PROMPT]
import { run } from "./load.js";

const [baseUrl, apiKey, mode, seconds, concurrency, prompt] = process.argv.slice(2);
const result = await run({ baseUrl, apiKey, mode, seconds: Number(seconds), concurrency: Number(concurrency), prompt });
console.log(JSON.stringify({ client: `node ${process.version}`, ...result }));
