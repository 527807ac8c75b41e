// Word timings read the cross-attention weights of a few decoder layers. The
// merged decoder computes everything its If branch holds whatever is fetched,
// the output projection over the whole vocabulary included (about half the
// run). This cuts from the merged decoder's with-past branch a graph whose
// only outputs are the wanted `cross_attentions.{layer}`: the nodes nothing
// wanted depends on (the projection, later layers, self-attention presents)
// are left out, the weights are the same.
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type IGraphProto = onnxProto.onnx.IGraphProto;
type INodeProto = onnxProto.onnx.INodeProto;

/** The merged decoder's bytes → the bytes of a model computing only `cross_attentions.{layers}` from the with-past inputs; null when the file is not laid out so (no If on use_cache_branch, weights in external files). */
export function alignmentGraph(mergedDecoder: Uint8Array, layers: number[]): Uint8Array | null {
  const model = onnx.ModelProto.decode(mergedDecoder);
  const main = model.graph!;
  const external = (main.initializer ?? []).some((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL);
  const branching = (main.node ?? []).filter((n) => n.opType === 'If' && n.input?.[0] === 'use_cache_branch');
  if (external || branching.length !== 1) return null;
  const ifNode = branching[0];
  const withPast = ifNode.attribute!.find((a) => a.name === 'then_branch')?.g;
  if (!withPast) return null;

  // The If's outputs are the branch's outputs, by position.
  const wanted = layers.map((l) => `cross_attentions.${l}`);
  const renames: INodeProto[] = [];
  for (const name of wanted) {
    const at = ifNode.output!.indexOf(name);
    if (at < 0) return null;
    renames.push({ opType: 'Identity', name: `alignment/${name}`, input: [withPast.output![at].name!], output: [name] });
  }
  const nodes = [...(main.node ?? []).filter((n) => n !== ifNode), ...(withPast.node ?? []), ...renames];
  const kept = reachable(nodes, wanted);
  const used = new Set(kept.flatMap((n) => consumed(n)));
  const graph: IGraphProto = {
    name: 'murmur_alignment',
    node: kept,
    initializer: [...(main.initializer ?? []), ...(withPast.initializer ?? [])].filter((t) => used.has(t.name!)),
    input: (main.input ?? []).filter((v) => used.has(v.name!)),
    output: wanted.map((name) => main.output!.find((v) => v.name === name)!),
    valueInfo: [],
  };
  // the with-past branch reads the cross-attention keys from the past inputs (the other computes them from the encoder's output)
  if (!graph.input!.some((v) => /^past_key_values\.\d+\.encoder\.key$/.test(v.name!))) return null;
  return onnx.ModelProto.encode(onnx.ModelProto.create({ ...model, graph })).finish();
}

/** Every value a node reads, those its subgraphs read from outside included. */
function consumed(node: INodeProto): string[] {
  const names = (node.input ?? []).filter((n) => n !== '');
  for (const a of node.attribute ?? []) {
    for (const g of [a.g, ...(a.graphs ?? [])]) {
      if (!g) continue;
      const inner = new Set([
        ...(g.input ?? []).map((v) => v.name!),
        ...(g.initializer ?? []).map((t) => t.name!),
        ...(g.node ?? []).flatMap((n) => n.output ?? []),
      ]);
      names.push(...(g.node ?? []).flatMap(consumed).filter((n) => !inner.has(n)));
    }
  }
  return names;
}

/** The nodes `outputs` depend on, in their order. */
function reachable(nodes: INodeProto[], outputs: string[]): INodeProto[] {
  const producer = new Map<string, INodeProto>();
  for (const n of nodes) for (const o of n.output ?? []) producer.set(o, n);
  const keep = new Set<INodeProto>();
  const stack = [...outputs];
  while (stack.length > 0) {
    const node = producer.get(stack.pop()!);
    if (!node || keep.has(node)) continue;
    keep.add(node);
    stack.push(...consumed(node));
  }
  return nodes.filter((n) => keep.has(n));
}
