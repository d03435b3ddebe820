/*
 * The 68 functions of PKCS#11 2.40, in CK_FUNCTION_LIST order, as one X-macro table.
 *
 * p11fault.c expands it into one wrapper per function and into the function list;
 * control.c expands it into the names the control language accepts. Adding a behaviour to a
 * function means changing its handler here and writing the hook in p11fault.c — nothing
 * else is written per function.
 *
 *   X(name, session, handler, params, args)
 *
 * session  SESSION when the first parameter is the session handle hSession (it is logged),
 *          NONE otherwise.
 * handler  FWD         forward to the real module unchanged;
 *          HOOK        p11fault.c defines hook_<name>(struct call *, args...), called instead
 *                      of forwarding (it forwards itself and adds the shim's behaviour);
 *          ENDOP       forward; when a failure is injected, p11fault.c's endop_<name>(args)
 *                      ends the real module's active operation, as a real token would;
 *          HOOK_ENDOP  both of the above;
 *          SELF        C_GetFunctionList, written by hand: it is the module's entry point.
 * params   the parameter list with PKCS#11's own names; args the same names, for calls.
 *
 * Types only appear in the text of params, so this header needs no PKCS#11 header until the
 * table is expanded with params (include <p11-kit/pkcs11.h> last, as always).
 */
#ifndef P11FAULT_FUNCTIONS_H
#define P11FAULT_FUNCTIONS_H

/* clang-format off */
#define P11FAULT_FUNCTIONS(X)                                                                      \
	X(C_Initialize, NONE, HOOK, (CK_VOID_PTR pInitArgs), (pInitArgs))                          \
	X(C_Finalize, NONE, HOOK, (CK_VOID_PTR pReserved), (pReserved))                            \
	X(C_GetInfo, NONE, FWD, (CK_INFO_PTR pInfo), (pInfo))                                      \
	X(C_GetFunctionList, NONE, SELF, (CK_FUNCTION_LIST_PTR_PTR ppFunctionList),                \
	  (ppFunctionList))                                                                        \
	X(C_GetSlotList, NONE, HOOK,                                                               \
	  (CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount),                \
	  (tokenPresent, pSlotList, pulCount))                                                     \
	X(C_GetSlotInfo, NONE, FWD, (CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo), (slotID, pInfo))  \
	X(C_GetTokenInfo, NONE, HOOK, (CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo),                \
	  (slotID, pInfo))                                                                         \
	X(C_GetMechanismList, NONE, FWD,                                                           \
	  (CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount),        \
	  (slotID, pMechanismList, pulCount))                                                      \
	X(C_GetMechanismInfo, NONE, FWD,                                                           \
	  (CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo),                \
	  (slotID, type, pInfo))                                                                   \
	X(C_InitToken, NONE, FWD,                                                                  \
	  (CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pLabel),    \
	  (slotID, pPin, ulPinLen, pLabel))                                                        \
	X(C_InitPIN, SESSION, FWD,                                                                 \
	  (CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen),                   \
	  (hSession, pPin, ulPinLen))                                                              \
	X(C_SetPIN, SESSION, FWD,                                                                  \
	  (CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen,                 \
	   CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen),                                            \
	  (hSession, pOldPin, ulOldLen, pNewPin, ulNewLen))                                        \
	X(C_OpenSession, NONE, HOOK,                                                               \
	  (CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,          \
	   CK_SESSION_HANDLE_PTR phSession),                                                       \
	  (slotID, flags, pApplication, Notify, phSession))                                        \
	X(C_CloseSession, SESSION, HOOK, (CK_SESSION_HANDLE hSession), (hSession))                 \
	X(C_CloseAllSessions, NONE, HOOK, (CK_SLOT_ID slotID), (slotID))                           \
	X(C_GetSessionInfo, SESSION, FWD, (CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo), \
	  (hSession, pInfo))                                                                       \
	X(C_GetOperationState, SESSION, FWD,                                                       \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,                                \
	   CK_ULONG_PTR pulOperationStateLen),                                                     \
	  (hSession, pOperationState, pulOperationStateLen))                                       \
	X(C_SetOperationState, SESSION, FWD,                                                       \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState, CK_ULONG ulOperationStateLen,  \
	   CK_OBJECT_HANDLE hEncryptionKey, CK_OBJECT_HANDLE hAuthenticationKey),                  \
	  (hSession, pOperationState, ulOperationStateLen, hEncryptionKey, hAuthenticationKey))    \
	X(C_Login, SESSION, HOOK,                                                                  \
	  (CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,                \
	   CK_ULONG ulPinLen),                                                                     \
	  (hSession, userType, pPin, ulPinLen))                                                    \
	X(C_Logout, SESSION, FWD, (CK_SESSION_HANDLE hSession), (hSession))                        \
	X(C_CreateObject, SESSION, FWD,                                                            \
	  (CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,               \
	   CK_OBJECT_HANDLE_PTR phObject),                                                         \
	  (hSession, pTemplate, ulCount, phObject))                                                \
	X(C_CopyObject, SESSION, FWD,                                                              \
	  (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,       \
	   CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject),                                    \
	  (hSession, hObject, pTemplate, ulCount, phNewObject))                                    \
	X(C_DestroyObject, SESSION, FWD, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject),   \
	  (hSession, hObject))                                                                     \
	X(C_GetObjectSize, SESSION, FWD,                                                           \
	  (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize),            \
	  (hSession, hObject, pulSize))                                                            \
	X(C_GetAttributeValue, SESSION, FWD,                                                       \
	  (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,       \
	   CK_ULONG ulCount),                                                                      \
	  (hSession, hObject, pTemplate, ulCount))                                                 \
	X(C_SetAttributeValue, SESSION, FWD,                                                       \
	  (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,       \
	   CK_ULONG ulCount),                                                                      \
	  (hSession, hObject, pTemplate, ulCount))                                                 \
	X(C_FindObjectsInit, SESSION, FWD,                                                         \
	  (CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount),              \
	  (hSession, pTemplate, ulCount))                                                          \
	X(C_FindObjects, SESSION, FWD,                                                             \
	  (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount,   \
	   CK_ULONG_PTR pulObjectCount),                                                           \
	  (hSession, phObject, ulMaxObjectCount, pulObjectCount))                                  \
	X(C_FindObjectsFinal, SESSION, FWD, (CK_SESSION_HANDLE hSession), (hSession))              \
	X(C_EncryptInit, SESSION, FWD,                                                             \
	  (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey),        \
	  (hSession, pMechanism, hKey))                                                            \
	X(C_Encrypt, SESSION, ENDOP,                                                               \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,                      \
	   CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen),                          \
	  (hSession, pData, ulDataLen, pEncryptedData, pulEncryptedDataLen))                       \
	X(C_EncryptUpdate, SESSION, ENDOP,                                                         \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,                      \
	   CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen),                          \
	  (hSession, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen))                       \
	X(C_EncryptFinal, SESSION, ENDOP,                                                          \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastEncryptedPart,                             \
	   CK_ULONG_PTR pulLastEncryptedPartLen),                                                  \
	  (hSession, pLastEncryptedPart, pulLastEncryptedPartLen))                                 \
	X(C_DecryptInit, SESSION, FWD,                                                             \
	  (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey),        \
	  (hSession, pMechanism, hKey))                                                            \
	X(C_Decrypt, SESSION, ENDOP,                                                               \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedData, CK_ULONG ulEncryptedDataLen,    \
	   CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen),                                            \
	  (hSession, pEncryptedData, ulEncryptedDataLen, pData, pulDataLen))                       \
	X(C_DecryptUpdate, SESSION, ENDOP,                                                         \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen,    \
	   CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen),                                            \
	  (hSession, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen))                       \
	X(C_DecryptFinal, SESSION, ENDOP,                                                          \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastPart, CK_ULONG_PTR pulLastPartLen),        \
	  (hSession, pLastPart, pulLastPartLen))                                                   \
	X(C_DigestInit, SESSION, FWD, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism),   \
	  (hSession, pMechanism))                                                                  \
	X(C_Digest, SESSION, ENDOP,                                                                \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pDigest, \
	   CK_ULONG_PTR pulDigestLen),                                                             \
	  (hSession, pData, ulDataLen, pDigest, pulDigestLen))                                     \
	X(C_DigestUpdate, SESSION, ENDOP,                                                          \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen),                     \
	  (hSession, pPart, ulPartLen))                                                            \
	X(C_DigestKey, SESSION, ENDOP, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey),        \
	  (hSession, hKey))                                                                        \
	X(C_DigestFinal, SESSION, ENDOP,                                                           \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen),            \
	  (hSession, pDigest, pulDigestLen))                                                       \
	X(C_SignInit, SESSION, FWD,                                                                \
	  (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey),        \
	  (hSession, pMechanism, hKey))                                                            \
	X(C_Sign, SESSION, HOOK_ENDOP,                                                             \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,                      \
	   CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen),                                  \
	  (hSession, pData, ulDataLen, pSignature, pulSignatureLen))                               \
	X(C_SignUpdate, SESSION, ENDOP,                                                            \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen),                     \
	  (hSession, pPart, ulPartLen))                                                            \
	X(C_SignFinal, SESSION, HOOK_ENDOP,                                                        \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen),      \
	  (hSession, pSignature, pulSignatureLen))                                                 \
	X(C_SignRecoverInit, SESSION, FWD,                                                         \
	  (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey),        \
	  (hSession, pMechanism, hKey))                                                            \
	X(C_SignRecover, SESSION, ENDOP,                                                           \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,                      \
	   CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen),                                  \
	  (hSession, pData, ulDataLen, pSignature, pulSignatureLen))                               \
	X(C_VerifyInit, SESSION, FWD,                                                              \
	  (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey),        \
	  (hSession, pMechanism, hKey))                                                            \
	X(C_Verify, SESSION, ENDOP,                                                                \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,                      \
	   CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen),                                       \
	  (hSession, pData, ulDataLen, pSignature, ulSignatureLen))                                \
	X(C_VerifyUpdate, SESSION, ENDOP,                                                          \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen),                     \
	  (hSession, pPart, ulPartLen))                                                            \
	X(C_VerifyFinal, SESSION, ENDOP,                                                           \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen),           \
	  (hSession, pSignature, ulSignatureLen))                                                  \
	X(C_VerifyRecoverInit, SESSION, FWD,                                                       \
	  (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey),        \
	  (hSession, pMechanism, hKey))                                                            \
	X(C_VerifyRecover, SESSION, ENDOP,                                                         \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen,            \
	   CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen),                                            \
	  (hSession, pSignature, ulSignatureLen, pData, pulDataLen))                               \
	X(C_DigestEncryptUpdate, SESSION, FWD,                                                     \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,                      \
	   CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen),                          \
	  (hSession, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen))                       \
	X(C_DecryptDigestUpdate, SESSION, FWD,                                                     \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen,    \
	   CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen),                                            \
	  (hSession, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen))                       \
	X(C_SignEncryptUpdate, SESSION, FWD,                                                       \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,                      \
	   CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen),                          \
	  (hSession, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen))                       \
	X(C_DecryptVerifyUpdate, SESSION, FWD,                                                     \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen,    \
	   CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen),                                            \
	  (hSession, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen))                       \
	X(C_GenerateKey, SESSION, FWD,                                                             \
	  (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate,    \
	   CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey),                                          \
	  (hSession, pMechanism, pTemplate, ulCount, phKey))                                       \
	X(C_GenerateKeyPair, SESSION, FWD,                                                         \
	  (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,                                \
	   CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount,                \
	   CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount,              \
	   CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey),                   \
	  (hSession, pMechanism, pPublicKeyTemplate, ulPublicKeyAttributeCount,                    \
	   pPrivateKeyTemplate, ulPrivateKeyAttributeCount, phPublicKey, phPrivateKey))            \
	X(C_WrapKey, SESSION, FWD,                                                                 \
	  (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey, \
	   CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen),         \
	  (hSession, pMechanism, hWrappingKey, hKey, pWrappedKey, pulWrappedKeyLen))               \
	X(C_UnwrapKey, SESSION, FWD,                                                               \
	  (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,                                \
	   CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen,     \
	   CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey),     \
	  (hSession, pMechanism, hUnwrappingKey, pWrappedKey, ulWrappedKeyLen, pTemplate,          \
	   ulAttributeCount, phKey))                                                               \
	X(C_DeriveKey, SESSION, FWD,                                                               \
	  (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hBaseKey,     \
	   CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey),     \
	  (hSession, pMechanism, hBaseKey, pTemplate, ulAttributeCount, phKey))                    \
	X(C_SeedRandom, SESSION, FWD,                                                              \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen),                     \
	  (hSession, pSeed, ulSeedLen))                                                            \
	X(C_GenerateRandom, SESSION, FWD,                                                          \
	  (CK_SESSION_HANDLE hSession, CK_BYTE_PTR RandomData, CK_ULONG ulRandomLen),              \
	  (hSession, RandomData, ulRandomLen))                                                     \
	X(C_GetFunctionStatus, SESSION, FWD, (CK_SESSION_HANDLE hSession), (hSession))             \
	X(C_CancelFunction, SESSION, FWD, (CK_SESSION_HANDLE hSession), (hSession))                \
	X(C_WaitForSlotEvent, NONE, FWD,                                                           \
	  (CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved),                           \
	  (flags, pSlot, pReserved))
/* clang-format on */

/* P11FAULT_FN_C_Sign, ...: an index per function, for tables and rules. */
enum p11fault_fn {
#define P11FAULT_FN_ENUM(name, ...) P11FAULT_FN_##name,
	P11FAULT_FUNCTIONS(P11FAULT_FN_ENUM)
#undef P11FAULT_FN_ENUM
		P11FAULT_FN_COUNT
};

#endif
