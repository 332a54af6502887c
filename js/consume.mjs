// Run a built package with transformers.js, as a web or Node.js consumer would, from a local folder.
// usage: node consume.mjs PACKAGE_DIR DTYPE TEXT...   (DTYPE: fp32 -> onnx/model.onnx, q8 -> onnx/model_quantized.onnx)
// Prints one JSON line: for each text, the token ids and the token embeddings (no pooling).
import path from 'node:path';
import { AutoTokenizer, env, pipeline } from '@huggingface/transformers';

const [packageDir, dtype, ...texts] = process.argv.slice(2);
env.allowRemoteModels = false; // never the network: the package folder only
env.localModelPath = path.dirname(path.resolve(packageDir));
const name = path.basename(path.resolve(packageDir));
const tokenizer = await AutoTokenizer.from_pretrained(name);
const extractor = await pipeline('feature-extraction', name, { dtype });
const out = [];
for (const text of texts) {
  const ids = tokenizer(text).input_ids.tolist()[0].map(Number);
  const embeddings = await extractor(text, { pooling: 'none' });
  out.push({ ids, dims: embeddings.dims, data: Array.from(embeddings.data) });
}
console.log(JSON.stringify(out));
