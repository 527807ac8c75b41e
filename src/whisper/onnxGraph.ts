// A small builder for ONNX graphs on top of onnx-proto's protobuf classes: the
// synthetic Whisper and the runtime's token selection graph are written with it.
import { Float16Array } from '@petamoriken/float16';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type INodeProto = onnxProto.onnx.INodeProto;
type ITensorProto = onnxProto.onnx.ITensorProto;
type IValueInfoProto = onnxProto.onnx.IValueInfoProto;
type IAttributeProto = onnxProto.onnx.IAttributeProto;
type IGraphProto = onnxProto.onnx.IGraphProto;

export const DataType = {
  float: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  int8: onnx.TensorProto.DataType.INT8,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
} as const;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

export type AttrValue = number | number[] | string | Graph | { float: number };

/** A dimension is a fixed size or a symbolic name (dynamic axis). */
export type Dim = number | string;

/** Without dims, the value has a type but no known shape (as If branch outputs do). */
export function valueInfo(name: string, elemType: DataTypeCode, dims?: Dim[]): IValueInfoProto {
  const shape = dims && { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) };
  return { name, type: { tensorType: { elemType, ...(shape && { shape }) } } };
}

function attribute(name: string, value: AttrValue): IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (value instanceof Graph) return { name, type: T.GRAPH, g: value.toProto() };
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  if (typeof value === 'number') return { name, type: T.INT, i: value };
  return { name, type: T.FLOAT, f: value.float };
}

/**
 * How matrices are stored: fp32 as they are; fp16 as float16 with a Cast back
 * to float32 (float32 inputs and outputs, like keep_io_types); q8 as int8 with
 * one scale per tensor and a DequantizeLinear.
 */
export type WeightFormat = 'fp32' | 'fp16' | 'q8';

export function tensorProto(
  name: string,
  dims: number[],
  data: Float32Array | BigInt64Array | Int8Array | Uint8Array | Uint16Array,
  dataType: DataTypeCode,
): ITensorProto {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return { name, dims, dataType, rawData: bytes };
}

/**
 * Collects nodes and initializers. Names of intermediate values are generated
 * from a prefix and a counter, so callers only name what the outside sees.
 */
export class Graph {
  readonly nodes: INodeProto[] = [];
  readonly initializers: ITensorProto[] = [];
  readonly inputs: IValueInfoProto[] = [];
  readonly outputs: IValueInfoProto[] = [];
  private counter = 0;
  /** Weights live in the top graph, so both branches of an If share them. */
  private readonly root: Graph;
  private readonly weightNames = new Set<string>();

  constructor(
    readonly name: string,
    readonly format: WeightFormat = 'fp32',
    parent?: Graph,
  ) {
    this.root = parent?.root ?? this;
  }

  /** A subgraph (an If branch) that reads its weights from this graph's top graph. */
  child(name: string): Graph {
    return new Graph(name, this.format, this);
  }

  fresh(hint: string): string {
    return `${this.name}/${hint}_${this.counter++}`;
  }

  input(name: string, elemType: DataTypeCode, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: DataTypeCode, dims?: Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** A float32 weight, stored in this graph's format; `keepFloat` for tables read by Gather. */
  weight(name: string, dims: number[], data: Float32Array, keepFloat = false): string {
    const float = this.format === 'fp32' || keepFloat || (this.format === 'q8' && dims.length < 2);
    const value = float ? name : `${name}/float`;
    const root = this.root;
    if (!root.weightNames.has(name)) {
      root.weightNames.add(name);
      root.initializers.push(...storedWeight(name, dims, data, float ? 'fp32' : this.format));
      // The conversion to float32 sits next to the weight in the top graph: onnxruntime's
      // quantization passes look for a DequantizeLinear's weight in its own graph.
      if (this.format === 'fp16' && !float) root.op('Cast', [name], { to: DataType.float }, value);
      if (this.format === 'q8' && !float) root.op('DequantizeLinear', [name, `${name}/scale`, `${name}/zero_point`], {}, value);
    }
    return value;
  }

  ints(values: number[], hint = 'const'): string {
    const name = this.fresh(hint);
    this.initializers.push(tensorProto(name, [values.length], BigInt64Array.from(values.map(BigInt)), DataType.int64));
    return name;
  }

  scalar(value: number, hint = 'scalar'): string {
    const name = this.fresh(hint);
    this.initializers.push(tensorProto(name, [], Float32Array.of(value), DataType.float));
    return name;
  }

  intScalar(value: number, hint = 'iscalar'): string {
    const name = this.fresh(hint);
    this.initializers.push(tensorProto(name, [], BigInt64Array.of(BigInt(value)), DataType.int64));
    return name;
  }

  /** Adds one node; returns its output names (`outputs` named, or fresh ones). */
  node(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputs: number | string[] = 1): string[] {
    const outNames = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh(opType)) : outputs;
    this.nodes.push({
      opType,
      name: this.fresh(`${opType}_node`),
      input: inputs,
      output: outNames,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outNames;
  }

  /** One-output node. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, output?: string): string {
    return this.node(opType, inputs, attrs, output ? [output] : 1)[0];
  }

  toProto(): IGraphProto {
    return {
      name: this.name,
      node: this.nodes,
      initializer: this.initializers,
      input: this.inputs,
      output: this.outputs,
    };
  }
}

function storedWeight(name: string, dims: number[], data: Float32Array, format: WeightFormat): ITensorProto[] {
  if (format === 'fp32') return [tensorProto(name, dims, data, DataType.float)];
  if (format === 'fp16') return [tensorProto(name, dims, new Uint16Array(new Float16Array(data).buffer as ArrayBuffer), DataType.float16)];
  let max = 0;
  for (const v of data) max = Math.max(max, Math.abs(v));
  const scale = max / 127 || 1;
  return [
    tensorProto(
      name,
      dims,
      Int8Array.from(data, (v) => Math.round(v / scale)),
      DataType.int8,
    ),
    tensorProto(`${name}/scale`, [], Float32Array.of(scale), DataType.float),
    tensorProto(`${name}/zero_point`, [], Int8Array.of(0), DataType.int8),
  ];
}

export const OPSET = 17;

export function encodeModel(graph: Graph, producer: string): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: producer,
    opsetImport: [{ domain: '', version: OPSET }],
    graph: graph.toProto(),
  });
  return onnx.ModelProto.encode(model).finish();
}
