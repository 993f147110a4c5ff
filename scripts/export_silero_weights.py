"""Export the 16 kHz branch weights of silero_vad.onnx (v6.2) into a safetensors file
using the tinygrad/PyTorch names (PyTorch LSTMCell gate order i,f,g,o)."""
import sys, onnx, numpy as np
from onnx import numpy_helper
from safetensors.numpy import save_file
src, dst = sys.argv[1], sys.argv[2]
m = onnx.load(src)
ifn = [n for n in m.graph.node if n.op_type == 'If'][0]
then = [a.g for a in ifn.attribute if a.name == 'then_branch'][0]
c = {}
for n in then.node:
    if n.op_type == 'Constant':
        c[n.output[0].replace('If_0_then_branch__Inline_0__', '')] = numpy_helper.to_array(n.attribute[0].t)
mp = {'stft_conv.weight': 'stft.forward_basis_buffer'}
for i in range(4):
    mp[f'conv{i+1}.weight'] = f'encoder.{i}.reparam_conv.weight'
    mp[f'conv{i+1}.bias'] = f'encoder.{i}.reparam_conv.bias'
for s in ['weight_ih', 'weight_hh', 'bias_ih', 'bias_hh']:
    mp['lstm_cell.' + s] = 'decoder.rnn.' + s
mp['final_conv.weight'] = 'decoder.decoder.2.weight'
mp['final_conv.bias'] = 'decoder.decoder.2.bias'
out = {k: np.ascontiguousarray(c[v].astype(np.float32)) for k, v in mp.items()}
for k, v in out.items(): print(k, v.shape)
save_file(out, dst)
