// Times onnxruntime-node on a model: median of RUNS runs after 3 warm-ups.
// Usage: node bench_ort.js MODEL.onnx BATCH [RUNS] [THREADS] [json]
// Prints one line: "ort batch=B threads=T median_ms=X", or with "json" a
// JSON object with the median, min and max ms and the peak RSS in bytes.
const ort = require('onnxruntime-node');

async function main() {
  const [model, batchArg, runsArg, threadsArg, format] = process.argv.slice(2);
  if (!model || !batchArg) {
    console.error('usage: node bench_ort.js MODEL.onnx BATCH [RUNS] [THREADS] [json]');
    process.exit(2);
  }
  const batch = parseInt(batchArg, 10);
  const runs = parseInt(runsArg || '10', 10);
  const threads = parseInt(threadsArg || '2', 10);
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const name = session.inputNames[0];
  const data = new Float32Array(batch * 3 * 224 * 224);
  for (let i = 0; i < data.length; i++) data[i] = (i % 255) / 255;
  const feed = { [name]: new ort.Tensor('float32', data, [batch, 3, 224, 224]) };
  for (let i = 0; i < 3; i++) await session.run(feed);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await session.run(feed);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  const n = times.length;
  const median = n % 2 ? times[(n - 1) / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
  if (format === 'json') {
    console.log(JSON.stringify({ median_ms: median, min_ms: times[0], max_ms: times[n - 1],
      peak_rss_bytes: process.resourceUsage().maxRSS * 1024, threads, ort: ort.env.versions.common }));
    return;
  }
  console.log(`ort batch=${batch} threads=${threads} median_ms=${median.toFixed(1)}`);
}

main().catch((e) => { console.error(e.message || e); process.exit(1); });
