# Runs scdoc (which reads stdin and writes stdout) on IN, writing OUT, without a shell: cmake -P.
# Variables: SCDOC, IN, OUT. A failure leaves no partial OUT behind.
get_filename_component(dir ${OUT} DIRECTORY)
file(MAKE_DIRECTORY ${dir})
execute_process(COMMAND ${SCDOC} INPUT_FILE ${IN} OUTPUT_FILE ${OUT}.tmp
	ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
	file(REMOVE ${OUT}.tmp)
	message(FATAL_ERROR "scdoc failed on ${IN}: ${err}")
endif()
file(RENAME ${OUT}.tmp ${OUT})
