#!/usr/bin/env python3
"""Code a maintainer can live in: no function over MAX_FN lines and no file
over MAX_FILE lines of non-test code under src/. Exit 1 (with the list)
when one is over; `--plant` proves the check can fail."""
import os
import re
import sys

MAX_FN = 80
MAX_FILE = 600
FN = re.compile(r'^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?fn\s+(\w+)')


def non_test_lines(lines):
    """The lines before a `#[cfg(test)]` that opens the test module."""
    for i, line in enumerate(lines):
        if line.strip() == '#[cfg(test)]' and i + 1 < len(lines) and \
                re.match(r'\s*(pub(\(crate\))?\s+)?mod\s+\w+', lines[i + 1]):
            return lines[:i]
    return lines


def test_module_files(path, lines):
    """The files of test modules declared out of line here
    (`#[cfg(test)]` then `mod tests;`): test code, like an inline one."""
    base = os.path.dirname(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem not in ('mod', 'lib', 'main'):
        base = os.path.join(base, stem)
    found = set()
    for i, line in enumerate(lines[:-1]):
        m = re.match(r'\s*mod\s+(\w+)\s*;', lines[i + 1])
        if line.strip() == '#[cfg(test)]' and m:
            found.add(os.path.join(base, m.group(1) + '.rs'))
    return found


def check_file(path, lines):
    problems = []
    code = non_test_lines(lines)
    counted = [l for l in code if l.strip() and not l.strip().startswith('//')]
    if len(counted) > MAX_FILE:
        problems.append(f'{path}: {len(counted)} lines of non-test code (max {MAX_FILE})')
    for i, line in enumerate(code):
        m = FN.match(line)
        if not m:
            continue
        indent = m.group(1)
        # The body ends at the first `}` line at the fn's own indentation.
        for j in range(i + 1, len(code)):
            if code[j].startswith(indent + '}') and not code[j].startswith(indent + '} else'):
                length = j - i + 1
                if length > MAX_FN:
                    problems.append(f'{path}:{i + 1}: fn {m.group(6)} is {length} lines (max {MAX_FN})')
                break
            if code[j].rstrip().endswith(';') and j == i:
                break
    return problems


def main():
    root = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != '--plant' else 'src'
    if '--plant' in sys.argv:
        planted = ['fn too_long() {'] + ['    let x = 1;'] * (MAX_FN + 1) + ['}']
        if not check_file('planted.rs', planted):
            print('code_size: the planted over-long function was not found', file=sys.stderr)
            return 1
        print('code_size: a planted over-long function is caught')
        return 0
    sources = {}
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            if name.endswith('.rs'):
                path = os.path.join(dirpath, name)
                with open(path, encoding='utf-8') as f:
                    sources[path] = f.read().split('\n')
    tests = set()
    for path, lines in sources.items():
        tests |= test_module_files(path, lines)
    problems = []
    for path in sorted(sources):
        if path not in tests:
            problems += check_file(path, sources[path])
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
