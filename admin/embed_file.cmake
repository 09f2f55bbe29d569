# cmake -DINPUT=file -DOUTPUT=file.cc -DSYMBOL=name -P embed_file.cmake
# Writes a C++ source holding INPUT's bytes:
#   extern const unsigned char name[]; extern const unsigned long name_size;
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" length)
math(EXPR size "${length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){32})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
     "// Generated from ${INPUT} by admin/embed_file.cmake.\n"
     "extern const unsigned char ${SYMBOL}[];\n"
     "extern const unsigned long ${SYMBOL}_size;\n"
     "const unsigned char ${SYMBOL}[] = {\n${bytes}\n};\n"
     "const unsigned long ${SYMBOL}_size = ${size};\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
