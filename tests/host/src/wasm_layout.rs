//! The linear memory a compiled component starts with: its stack, its static data and its
//! initial size, read from the binary (no `wasm-tools` needed), and a copy of the
//! binary with a smaller stack, to measure how much stack a request needs.
//!
//! rustc links `wasm32-wasip2` code with `--stack-first`: the shadow stack (the part of
//! the stack in linear memory: locals whose address is taken, large values) occupies
//! `[0, stack_bytes)` and grows down from `stack_bytes`, the initial value of the
//! `__stack_pointer` global; static data follows it. A stack overflow therefore moves the
//! stack pointer below 0, which wraps to an address far outside the memory: a trap, never
//! silently overwritten data. Lowering the pointer's initial value gives the same code a
//! smaller stack, which is how [`with_stack_bytes`] simulates `-zstack-size` without
//! relinking.

use std::ops::Range;

use anyhow::{bail, ensure, Context, Result};
use wasmparser::{DataKind, Encoding, Parser, Payload, TypeRef, ValType};

/// A wasm page.
pub const PAGE_BYTES: u64 = 64 * 1024;

/// The memory layout of a component's main core module (the one that defines its memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLayout {
    /// The stack size: the initial value of the stack pointer.
    pub stack_bytes: u32,
    /// The lowest address of static data (`stack_bytes` or above, as the stack is first).
    pub data_start: u32,
    /// The end of static data.
    pub data_end: u32,
    /// The linear memory an instance starts with, in 64 KiB pages.
    pub initial_pages: u64,
    /// Where in the binary the stack pointer's initial value is encoded (signed LEB128).
    stack_pointer_init: Range<usize>,
}

/// What one core module defines, as far as the layout is concerned.
#[derive(Default)]
struct Module {
    defines_memory: Option<u64>,
    first_global: Option<(bool, Option<Range<usize>>, Option<i32>)>,
    data: Vec<(u32, u32)>,
}

/// Reads the layout of `component` (a component or a core module).
pub fn memory_layout(component: &[u8]) -> Result<MemoryLayout> {
    let mut stack: Vec<Module> = Vec::new();
    let mut done: Vec<Module> = Vec::new();
    for payload in Parser::new(0).parse_all(component) {
        match payload? {
            Payload::Version { encoding: Encoding::Module, .. } => stack.push(Module::default()),
            Payload::Version { .. } => stack.push(Module::default()), // a component: ignored
            Payload::End(_) => done.extend(stack.pop()),
            Payload::ImportSection(reader) => {
                // An imported global comes first in the index space: then global 0 is
                // not the module's own stack pointer.
                for import in reader.into_imports() {
                    if let TypeRef::Global(_) = import?.ty {
                        if let Some(module) = stack.last_mut() {
                            module.first_global.get_or_insert((false, None, None));
                        }
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory?;
                    if let Some(module) = stack.last_mut() {
                        module.defines_memory.get_or_insert(memory.initial);
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                if let (Some(global), Some(module)) = (reader.into_iter().next(), stack.last_mut()) {
                    let global = global?;
                    let mut init = global.init_expr.get_binary_reader();
                    let is_i32 = global.ty.content_type == ValType::I32 && global.ty.mutable;
                    let value = (init.read_u8()? == 0x41)
                        .then(|| -> Result<(Range<usize>, i32)> {
                            let start = init.original_position();
                            let value = init.read_var_i32()?;
                            Ok((start..init.original_position(), value))
                        })
                        .transpose()?;
                    module.first_global.get_or_insert((is_i32, value.clone().map(|v| v.0), value.map(|v| v.1)));
                }
            }
            Payload::DataSection(reader) => {
                for data in reader {
                    let data = data?;
                    if let DataKind::Active { memory_index: 0, offset_expr } = data.kind {
                        let mut offset = offset_expr.get_binary_reader();
                        if offset.read_u8()? == 0x41 {
                            let start = offset.read_var_i32()? as u32;
                            if let Some(module) = stack.last_mut() {
                                module.data.push((start, start + data.data.len() as u32));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut mains = done.into_iter().filter(|m| m.defines_memory.is_some());
    let main = mains.next().context("no core module defines a linear memory")?;
    ensure!(mains.next().is_none(), "more than one core module defines a linear memory");
    let Some((true, Some(stack_pointer_init), Some(stack_bytes))) = main.first_global else {
        bail!("the main module's first global is not a mutable i32 set by i32.const (the stack pointer)");
    };
    let data_start = main.data.iter().map(|d| d.0).min().unwrap_or(stack_bytes as u32);
    let data_end = main.data.iter().map(|d| d.1).max().unwrap_or(stack_bytes as u32);
    ensure!(
        stack_bytes >= 0 && data_start >= stack_bytes as u32,
        "static data starts at {data_start}, below the stack pointer {stack_bytes}: not rustc's --stack-first layout"
    );
    Ok(MemoryLayout {
        stack_bytes: stack_bytes as u32,
        data_start,
        data_end,
        initial_pages: main.defines_memory.unwrap_or(0),
        stack_pointer_init,
    })
}

/// A copy of `component` whose stack is `bytes` instead of its linked size: the stack
/// pointer starts lower; data and memory stay where they are. `bytes` must be at most
/// the linked size (and fit the original encoding's length), and a multiple of 16 (the
/// stack's alignment).
pub fn with_stack_bytes(component: &[u8], bytes: u32) -> Result<Vec<u8>> {
    let layout = memory_layout(component)?;
    ensure!(bytes % 16 == 0, "a stack of {bytes} bytes is not 16-byte aligned");
    ensure!(bytes <= layout.stack_bytes, "can only lower the stack, not raise it above {}", layout.stack_bytes);
    let range = layout.stack_pointer_init.clone();
    let encoded = padded_sleb128(bytes as i32, range.len())
        .with_context(|| format!("{bytes} does not fit in {} LEB128 bytes", range.len()))?;
    let mut patched = component.to_vec();
    patched[range].copy_from_slice(&encoded);
    let check = memory_layout(&patched)?;
    ensure!(check.stack_bytes == bytes, "patching the stack pointer failed");
    Ok(patched)
}

/// `value` as signed LEB128 in exactly `len` bytes (padding with continuation bytes is
/// valid wasm), or `None` if it needs more.
fn padded_sleb128(value: i32, len: usize) -> Option<Vec<u8>> {
    let bits = 7 * len as u32;
    let fits = bits >= 32 || (value as i64) < (1i64 << (bits - 1)) && (value as i64) >= -(1i64 << (bits - 1));
    fits.then(|| {
        (0..len)
            .map(|i| {
                let byte = ((value as i64 >> (7 * i)) & 0x7f) as u8;
                if i + 1 < len { byte | 0x80 } else { byte }
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_leb128_decodes_to_the_value() {
        for (value, len) in [(0, 1), (16, 3), (65536, 3), (1048576, 4), (1048576 - 16, 3)] {
            let bytes = padded_sleb128(value, len).unwrap();
            assert_eq!(bytes.len(), len);
            let mut reader = wasmparser::BinaryReader::new(&bytes, 0);
            assert_eq!(reader.read_var_i32().unwrap(), value);
        }
        assert_eq!(padded_sleb128(1048576, 3), None);
        assert_eq!(padded_sleb128(64, 1), None);
    }
}
